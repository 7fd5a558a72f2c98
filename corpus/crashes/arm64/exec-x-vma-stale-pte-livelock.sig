arm64: disposition livelock -> signal [good_area | generic:bad_access]
