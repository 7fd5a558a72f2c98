arm64: faults 3 -> 1 [kernel:no_context | generic:retry_abort_kernel]
