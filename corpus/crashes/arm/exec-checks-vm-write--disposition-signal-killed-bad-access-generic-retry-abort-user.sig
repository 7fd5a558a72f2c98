arm: disposition signal -> killed [bad_access | generic:retry_abort_user]
