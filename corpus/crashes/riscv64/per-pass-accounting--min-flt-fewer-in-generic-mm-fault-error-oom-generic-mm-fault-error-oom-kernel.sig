riscv64: min_flt fewer in generic [mm_fault_error:oom | generic:mm_fault_error:oom_kernel]
