arm: handle_mm_fault.calls fewer in generic [no_context | generic:bad_access]
