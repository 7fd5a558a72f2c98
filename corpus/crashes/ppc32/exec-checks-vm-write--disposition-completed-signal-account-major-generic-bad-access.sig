ppc32: disposition completed -> signal [account_major | generic:bad_access]
