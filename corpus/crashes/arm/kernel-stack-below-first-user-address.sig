arm: handle_mm_fault.calls 0 -> 1 [no_context | generic:mm_fault_error:sigsegv]
