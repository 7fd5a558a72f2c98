arm: signal.code SEGV_ACCERR -> SEGV_MAPERR [bad_access | generic:mm_fault_error:sigsegv]
