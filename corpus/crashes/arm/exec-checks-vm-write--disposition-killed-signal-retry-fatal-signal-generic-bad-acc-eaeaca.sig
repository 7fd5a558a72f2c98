arm: disposition killed -> signal [retry_fatal_signal | generic:bad_access]
