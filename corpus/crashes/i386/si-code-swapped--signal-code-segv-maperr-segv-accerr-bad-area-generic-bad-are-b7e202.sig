i386: signal.code SEGV_MAPERR -> SEGV_ACCERR [bad_area | generic:bad_area]
