riscv64: disposition livelock -> oops [done | generic:bad_access]
