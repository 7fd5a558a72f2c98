ppc32: disposition completed -> oops [good_area | generic:bad_access]
