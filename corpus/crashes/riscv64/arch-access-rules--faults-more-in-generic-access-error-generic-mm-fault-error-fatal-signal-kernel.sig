riscv64: faults more in generic [access_error | generic:mm_fault_error:fatal_signal_kernel]
