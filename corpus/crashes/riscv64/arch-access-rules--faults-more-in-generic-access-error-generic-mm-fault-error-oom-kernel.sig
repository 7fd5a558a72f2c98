riscv64: faults more in generic [access_error | generic:mm_fault_error:oom_kernel]
