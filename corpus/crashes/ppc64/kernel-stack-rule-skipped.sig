ppc64: disposition fixup -> completed [bad_area | generic:account_minor]
