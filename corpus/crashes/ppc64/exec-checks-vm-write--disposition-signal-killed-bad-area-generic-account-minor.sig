ppc64: disposition signal -> killed [bad_area | generic:account_minor]
