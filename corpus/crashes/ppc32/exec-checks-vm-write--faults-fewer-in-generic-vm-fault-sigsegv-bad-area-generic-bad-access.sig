ppc32: faults fewer in generic [VM_FAULT_SIGSEGV:bad_area | generic:bad_access]
