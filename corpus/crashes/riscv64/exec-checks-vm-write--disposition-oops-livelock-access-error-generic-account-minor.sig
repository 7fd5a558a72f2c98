riscv64: disposition oops -> livelock [access_error | generic:account_minor]
