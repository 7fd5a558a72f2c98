arm64: signal SIGBUS -> SIGSEGV [VM_FAULT_SIGBUS:sigbus | generic:bad_access]
