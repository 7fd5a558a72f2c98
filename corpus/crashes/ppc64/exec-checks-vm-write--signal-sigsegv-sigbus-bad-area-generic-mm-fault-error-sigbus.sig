ppc64: signal SIGSEGV -> SIGBUS [bad_area | generic:mm_fault_error:sigbus]
