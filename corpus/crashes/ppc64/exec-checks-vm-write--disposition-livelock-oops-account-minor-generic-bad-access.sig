ppc64: disposition livelock -> oops [account_minor | generic:bad_access]
