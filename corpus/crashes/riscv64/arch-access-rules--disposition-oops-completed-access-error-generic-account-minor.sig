riscv64: disposition oops -> completed [access_error | generic:account_minor]
