ppc64: disposition signal -> killed [bad_area | generic:retry_abort_user]
