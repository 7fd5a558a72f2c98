arm64: disposition killed -> signal [VM_FAULT_OOM:pagefault_out_of_memory | generic:bad_access]
