arm: faults more in generic [no_context | generic:retry_abort_kernel]
