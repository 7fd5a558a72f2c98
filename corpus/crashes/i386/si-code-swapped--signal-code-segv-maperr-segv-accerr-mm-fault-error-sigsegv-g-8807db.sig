i386: signal.code SEGV_MAPERR -> SEGV_ACCERR [mm_fault_error:sigsegv | generic:mm_fault_error:sigsegv]
