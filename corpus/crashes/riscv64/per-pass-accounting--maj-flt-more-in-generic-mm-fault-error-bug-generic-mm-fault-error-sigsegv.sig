riscv64: maj_flt more in generic [mm_fault_error:BUG | generic:mm_fault_error:sigsegv]
