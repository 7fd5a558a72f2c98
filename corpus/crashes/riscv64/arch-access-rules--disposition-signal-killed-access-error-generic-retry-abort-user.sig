riscv64: disposition signal -> killed [access_error | generic:retry_abort_user]
