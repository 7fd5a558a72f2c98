i386: disposition signal -> killed [bad_area_access_error | generic:account_major]
