i386: disposition signal -> killed [bad_area_access_error | generic:retry_abort_user]
