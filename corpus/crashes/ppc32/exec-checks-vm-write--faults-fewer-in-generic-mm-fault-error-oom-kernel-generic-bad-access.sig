ppc32: faults fewer in generic [mm_fault_error:oom_kernel | generic:bad_access]
