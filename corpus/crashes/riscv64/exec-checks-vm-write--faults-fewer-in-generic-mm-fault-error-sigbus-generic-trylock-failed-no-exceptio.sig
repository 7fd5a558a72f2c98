riscv64: faults fewer in generic [mm_fault_error:sigbus | generic:trylock_failed_no_exception_entry]
