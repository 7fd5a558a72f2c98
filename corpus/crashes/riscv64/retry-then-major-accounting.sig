riscv64: maj_flt 0 -> 1 [done | generic:account_major]
