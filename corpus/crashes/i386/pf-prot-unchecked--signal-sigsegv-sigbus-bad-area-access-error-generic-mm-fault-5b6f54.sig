i386: signal SIGSEGV -> SIGBUS [bad_area_access_error | generic:mm_fault_error:sigbus]
