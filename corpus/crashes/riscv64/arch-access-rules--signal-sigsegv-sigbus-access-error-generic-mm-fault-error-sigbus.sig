riscv64: signal SIGSEGV -> SIGBUS [access_error | generic:mm_fault_error:sigbus]
