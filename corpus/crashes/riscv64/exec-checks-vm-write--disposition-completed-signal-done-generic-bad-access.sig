riscv64: disposition completed -> signal [done | generic:bad_access]
