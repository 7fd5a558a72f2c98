x86_64: faults 1 -> 2 [bad_area_access_error | generic:mm_fault_error:sigsegv]
