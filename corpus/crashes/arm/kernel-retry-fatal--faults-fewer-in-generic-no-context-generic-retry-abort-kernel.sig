arm: faults fewer in generic [no_context | generic:retry_abort_kernel]
