ppc32: handle_mm_fault.calls fewer in generic [mm_fault_error:fatal_signal_kernel | generic:bad_access]
