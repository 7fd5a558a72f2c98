x86_64: disposition oops -> livelock [bad_area_access_error | generic:account_minor]
