arm: disposition killed -> signal [handled | generic:bad_access]
