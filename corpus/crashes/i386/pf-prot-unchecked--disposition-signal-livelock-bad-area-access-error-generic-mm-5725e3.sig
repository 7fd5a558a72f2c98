i386: disposition signal -> livelock [bad_area_access_error | generic:mm_fault_error:oom_user]
