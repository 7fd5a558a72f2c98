arm: handle_mm_fault.calls more in generic [no_context | generic:retry_abort_kernel]
