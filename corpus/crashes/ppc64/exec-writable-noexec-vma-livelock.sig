ppc64: disposition signal -> livelock [bad_area | generic:account_minor]
