ppc64: signal.code SEGV_ACCERR -> SEGV_MAPERR [bad_area | generic:mm_fault_error:sigsegv]
