arm64: signal.code SEGV_MAPERR -> SEGV_ACCERR [sigsegv | generic:bad_access]
