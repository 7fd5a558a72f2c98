arm64: disposition completed -> fixup [good_area | generic:retry_abort_kernel]
