arm: disposition killed -> signal [pagefault_out_of_memory | generic:bad_access]
