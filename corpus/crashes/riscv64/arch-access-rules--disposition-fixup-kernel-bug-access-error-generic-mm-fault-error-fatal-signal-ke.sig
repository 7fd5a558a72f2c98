riscv64: disposition fixup -> kernel_bug [access_error | generic:mm_fault_error:fatal_signal_kernel]
