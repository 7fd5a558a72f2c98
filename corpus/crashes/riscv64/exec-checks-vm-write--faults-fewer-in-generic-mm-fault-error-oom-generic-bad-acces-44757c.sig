riscv64: faults fewer in generic [mm_fault_error:oom | generic:bad_access]
