arm: signal SIGBUS -> SIGSEGV [sigbus | generic:bad_access]
