arm: disposition livelock -> oops [handled | generic:bad_access]
