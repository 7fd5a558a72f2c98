arm64: disposition signal -> killed [sigsegv | generic:mm_fault_error:oom_user]
