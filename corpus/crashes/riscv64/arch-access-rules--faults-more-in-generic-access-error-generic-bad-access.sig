riscv64: faults more in generic [access_error | generic:bad_access]
