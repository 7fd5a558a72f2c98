ppc32: handle_mm_fault.calls fewer in generic [mm_fault_error:sigbus | generic:bad_access]
