arm64: signal SIGSEGV -> SIGBUS [sigsegv | generic:mm_fault_error:sigbus]
