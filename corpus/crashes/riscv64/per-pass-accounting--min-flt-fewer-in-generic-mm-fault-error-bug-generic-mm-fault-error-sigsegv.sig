riscv64: min_flt fewer in generic [mm_fault_error:BUG | generic:mm_fault_error:sigsegv]
