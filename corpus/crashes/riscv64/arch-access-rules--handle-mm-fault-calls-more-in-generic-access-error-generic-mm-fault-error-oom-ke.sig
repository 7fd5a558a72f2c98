riscv64: handle_mm_fault.calls more in generic [access_error | generic:mm_fault_error:oom_kernel]
