ppc64: disposition oops -> livelock [bad_area | generic:account_minor]
