ppc64: disposition completed -> signal [account_minor | generic:bad_access]
