riscv64: disposition signal -> completed [access_error | generic:account_major]
