riscv64: maj_flt more in generic [access_error | generic:bad_access]
