riscv64: disposition kernel_bug -> oops [mm_fault_error:BUG | generic:trylock_failed_no_exception_entry]
