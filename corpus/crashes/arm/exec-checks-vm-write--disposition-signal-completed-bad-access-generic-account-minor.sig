arm: disposition signal -> completed [bad_access | generic:account_minor]
