riscv64: handle_mm_fault.calls more in generic [access_error | generic:mm_fault_error:fatal_signal_kernel]
