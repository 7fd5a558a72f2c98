riscv64: min_flt fewer in generic [access_error | generic:bad_access]
