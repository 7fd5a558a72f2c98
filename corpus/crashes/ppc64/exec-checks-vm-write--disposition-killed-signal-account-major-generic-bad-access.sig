ppc64: disposition killed -> signal [account_major | generic:bad_access]
