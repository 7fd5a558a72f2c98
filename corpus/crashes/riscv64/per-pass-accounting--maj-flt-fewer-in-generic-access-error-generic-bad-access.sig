riscv64: maj_flt fewer in generic [access_error | generic:bad_access]
