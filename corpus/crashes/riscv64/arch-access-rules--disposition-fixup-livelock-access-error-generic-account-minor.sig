riscv64: disposition fixup -> livelock [access_error | generic:account_minor]
