riscv64: disposition kernel_bug -> signal [mm_fault_error:BUG | generic:bad_access]
