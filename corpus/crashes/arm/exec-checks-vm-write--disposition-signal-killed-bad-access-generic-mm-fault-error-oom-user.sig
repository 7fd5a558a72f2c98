arm: disposition signal -> killed [bad_access | generic:mm_fault_error:oom_user]
