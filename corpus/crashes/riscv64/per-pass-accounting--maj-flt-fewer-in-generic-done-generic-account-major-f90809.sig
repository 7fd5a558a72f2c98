riscv64: maj_flt fewer in generic [done | generic:account_major]
