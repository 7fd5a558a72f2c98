x86_64: signal none -> SIGSEGV [mm_fault_error:fatal_signal_kernel | generic:mm_fault_error:fatal_signal_kernel]
