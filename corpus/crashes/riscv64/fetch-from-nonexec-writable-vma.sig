riscv64: disposition signal -> livelock [access_error | generic:account_minor]
