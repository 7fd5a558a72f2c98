i386: handle_mm_fault.calls 1 -> 2 [bad_area_access_error | generic:mm_fault_error:sigsegv]
