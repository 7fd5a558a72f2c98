ppc32: signal.code SEGV_MAPERR -> SEGV_ACCERR [VM_FAULT_SIGSEGV:bad_area | generic:bad_access]
