riscv64: disposition killed -> signal [done | generic:bad_access]
