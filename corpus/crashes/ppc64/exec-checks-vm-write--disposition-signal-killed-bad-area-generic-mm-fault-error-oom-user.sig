ppc64: disposition signal -> killed [bad_area | generic:mm_fault_error:oom_user]
