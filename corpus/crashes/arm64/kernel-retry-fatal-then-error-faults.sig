arm64: faults 2 -> 1 [kernel:no_context | generic:retry_abort_kernel]
