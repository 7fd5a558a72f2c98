ppc32: disposition oops -> completed [bad_area | generic:account_minor]
