arm: disposition livelock -> signal [handled | generic:bad_access]
