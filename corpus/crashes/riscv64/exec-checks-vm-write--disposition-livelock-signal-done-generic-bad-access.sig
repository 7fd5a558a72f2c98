riscv64: disposition livelock -> signal [done | generic:bad_access]
