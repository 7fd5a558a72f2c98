arm64: disposition killed -> signal [retry:fatal_signal_return | generic:bad_access]
