riscv64: min_flt fewer in generic [mm_fault_error:sigbus | generic:mm_fault_error:sigbus]
