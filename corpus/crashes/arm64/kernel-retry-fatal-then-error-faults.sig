arm64: faults fewer in generic [kernel:no_context | generic:retry_abort_kernel]
