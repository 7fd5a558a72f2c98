riscv64: disposition kernel_bug -> oops [mm_fault_error:BUG | generic:bad_access]
