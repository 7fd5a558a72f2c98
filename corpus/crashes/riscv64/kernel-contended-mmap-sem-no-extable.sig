riscv64: disposition completed -> oops [done | generic:trylock_failed_no_exception_entry]
