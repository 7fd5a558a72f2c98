ppc32: handle_mm_fault.calls fewer in generic [VM_FAULT_SIGSEGV:bad_area | generic:bad_access]
