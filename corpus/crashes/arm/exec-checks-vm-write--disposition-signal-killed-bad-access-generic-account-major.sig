arm: disposition signal -> killed [bad_access | generic:account_major]
