arm: signal 0 -> SIGSEGV [bad_area | generic:bad_access]
