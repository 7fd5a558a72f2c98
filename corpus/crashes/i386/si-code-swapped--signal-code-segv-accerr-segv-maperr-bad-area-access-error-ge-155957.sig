i386: signal.code SEGV_ACCERR -> SEGV_MAPERR [bad_area_access_error | generic:bad_access]
