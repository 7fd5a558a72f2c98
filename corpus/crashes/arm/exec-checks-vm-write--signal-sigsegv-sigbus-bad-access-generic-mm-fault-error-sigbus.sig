arm: signal SIGSEGV -> SIGBUS [bad_access | generic:mm_fault_error:sigbus]
