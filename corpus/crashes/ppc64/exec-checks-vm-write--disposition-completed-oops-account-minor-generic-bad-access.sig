ppc64: disposition completed -> oops [account_minor | generic:bad_access]
