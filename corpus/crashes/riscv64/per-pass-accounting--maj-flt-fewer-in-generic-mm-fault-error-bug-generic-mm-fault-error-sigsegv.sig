riscv64: maj_flt fewer in generic [mm_fault_error:BUG | generic:mm_fault_error:sigsegv]
