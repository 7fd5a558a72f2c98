ppc64: disposition livelock -> signal [account_minor | generic:bad_access]
