riscv64: vmas differs [access_error | generic:trylock_failed_no_exception_entry]
