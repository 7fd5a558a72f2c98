i386: disposition signal -> livelock [bad_area_access_error | generic:account_minor]
