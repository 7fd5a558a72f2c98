arm: disposition completed -> oops [handled | generic:bad_access]
