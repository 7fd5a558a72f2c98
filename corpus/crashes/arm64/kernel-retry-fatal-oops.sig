arm64: disposition completed -> oops [good_area | generic:retry_abort_kernel]
