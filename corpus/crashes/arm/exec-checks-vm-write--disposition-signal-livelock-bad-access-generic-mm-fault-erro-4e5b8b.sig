arm: disposition signal -> livelock [bad_access | generic:mm_fault_error:oom_user]
