x86_64: handle_mm_fault.calls more in generic [bad_area_access_error | generic:mm_fault_error:sigbus]
