arm64: signal SIGBUS -> SIGSEGV [sigsegv | generic:bad_access]
