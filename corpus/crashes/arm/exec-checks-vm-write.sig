arm: disposition completed -> signal [handled | generic:bad_access]
