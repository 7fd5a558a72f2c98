i386: faults more in generic [bad_area_access_error | generic:mm_fault_error:sigsegv]
