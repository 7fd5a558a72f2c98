ppc32: signal SIGBUS -> SIGSEGV [mm_fault_error:sigbus | generic:bad_access]
