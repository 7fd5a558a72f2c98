i386: disposition oops -> livelock [bad_area_access_error | generic:account_minor]
