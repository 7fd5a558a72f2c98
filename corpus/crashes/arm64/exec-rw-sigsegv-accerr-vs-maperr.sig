arm64: signal.code SEGV_ACCERR -> SEGV_MAPERR [sigsegv | generic:mm_fault_error:sigsegv]
