arm: handle_mm_fault.calls more in generic [no_context | generic:mm_fault_error:sigsegv]
