arm64: disposition killed -> signal [good_area | generic:bad_access]
