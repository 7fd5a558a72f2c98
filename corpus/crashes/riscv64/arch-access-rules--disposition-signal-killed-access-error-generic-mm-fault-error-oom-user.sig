riscv64: disposition signal -> killed [access_error | generic:mm_fault_error:oom_user]
