arm: disposition signal -> livelock [bad_access | generic:account_major]
