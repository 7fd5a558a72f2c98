riscv64: maj_flt more in generic [mm_fault_error:sigbus | generic:mm_fault_error:sigbus]
