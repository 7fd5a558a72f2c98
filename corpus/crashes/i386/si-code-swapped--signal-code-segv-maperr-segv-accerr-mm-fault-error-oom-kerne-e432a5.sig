i386: signal.code SEGV_MAPERR -> SEGV_ACCERR [mm_fault_error:oom_kernel | generic:mm_fault_error:oom_kernel]
