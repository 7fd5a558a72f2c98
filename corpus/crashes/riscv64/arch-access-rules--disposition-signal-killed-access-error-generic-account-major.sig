riscv64: disposition signal -> killed [access_error | generic:account_major]
