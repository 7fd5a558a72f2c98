ppc64: disposition killed -> signal [account_minor | generic:bad_access]
