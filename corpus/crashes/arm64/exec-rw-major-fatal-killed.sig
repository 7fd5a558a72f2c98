arm64: disposition signal -> killed [sigsegv | generic:account_major]
