arm: faults more in generic [no_context | generic:mm_fault_error:sigbus]
