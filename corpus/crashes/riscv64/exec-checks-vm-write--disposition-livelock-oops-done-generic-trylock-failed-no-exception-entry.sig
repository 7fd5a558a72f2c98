riscv64: disposition livelock -> oops [done | generic:trylock_failed_no_exception_entry]
