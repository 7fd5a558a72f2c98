ppc32: disposition completed -> oops [account_minor | generic:bad_access]
