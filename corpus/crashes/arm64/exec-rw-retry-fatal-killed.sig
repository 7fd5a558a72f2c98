arm64: disposition signal -> killed [sigsegv | generic:retry_abort_user]
