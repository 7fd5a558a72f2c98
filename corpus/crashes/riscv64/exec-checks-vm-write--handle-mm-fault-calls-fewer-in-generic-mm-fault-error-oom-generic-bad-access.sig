riscv64: handle_mm_fault.calls fewer in generic [mm_fault_error:oom | generic:bad_access]
