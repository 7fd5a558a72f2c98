arm64: disposition signal -> livelock [sigsegv | generic:account_minor]
