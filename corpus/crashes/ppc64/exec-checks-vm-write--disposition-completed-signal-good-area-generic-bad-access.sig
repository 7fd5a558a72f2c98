ppc64: disposition completed -> signal [good_area | generic:bad_access]
