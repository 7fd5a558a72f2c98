riscv64: maj_flt 1 -> 0 [mm_fault_error:sigbus | generic:mm_fault_error:sigbus]
