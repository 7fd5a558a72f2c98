ppc64: disposition completed -> signal [account_major | generic:bad_access]
