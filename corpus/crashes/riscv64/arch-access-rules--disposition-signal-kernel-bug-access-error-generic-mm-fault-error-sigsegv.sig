riscv64: disposition signal -> kernel_bug [access_error | generic:mm_fault_error:sigsegv]
