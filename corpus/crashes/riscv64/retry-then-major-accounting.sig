riscv64: maj_flt more in generic [done | generic:account_major]
