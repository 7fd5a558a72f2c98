arm: disposition completed -> oops [handled | generic:retry_abort_kernel]
