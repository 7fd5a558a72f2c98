arm: disposition livelock -> oops [handled | generic:retry_abort_kernel]
