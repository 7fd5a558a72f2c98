riscv64: disposition fixup -> completed [access_error | generic:account_minor]
