arm: disposition completed -> fixup [handled | generic:retry_abort_kernel]
