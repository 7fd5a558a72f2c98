arm: signal SIGSEGV -> 0 [bad_access | generic:mm_fault_error:sigbus]
