riscv64: disposition oops -> kernel_bug [access_error | generic:mm_fault_error:sigsegv]
