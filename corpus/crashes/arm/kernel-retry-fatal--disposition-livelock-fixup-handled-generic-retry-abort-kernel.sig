arm: disposition livelock -> fixup [handled | generic:retry_abort_kernel]
