ppc64: disposition killed -> signal [mm_fault_error:fatal_signal_user | generic:bad_access]
