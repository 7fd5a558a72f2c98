arm64: disposition signal -> completed [sigsegv | generic:account_minor]
