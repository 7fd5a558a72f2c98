riscv64: min_flt fewer in generic [done | generic:account_minor]
