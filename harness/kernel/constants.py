"""Linux 4.0 constants the fault handlers use, with their real values and names.

Sources: include/linux/mm.h (v4.0) for FAULT_FLAG_*, VM_FAULT_* and VM_*; the RFC posting adds
FAULT_FLAG_EXEC/PROT/NO_STK_GROW and VM_FAULT_ACCESS; include/uapi/asm-generic/siginfo.h for the
si_codes as user space sees them (the kernel's internal __SI_FAULT bits are not modelled).
"""

from __future__ import annotations

from typing import Iterable, Mapping

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)

# include/linux/mm.h v4.0 L207-213
FAULT_FLAG_WRITE = 0x01
FAULT_FLAG_MKWRITE = 0x02
FAULT_FLAG_ALLOW_RETRY = 0x04
FAULT_FLAG_RETRY_NOWAIT = 0x08
FAULT_FLAG_KILLABLE = 0x10
FAULT_FLAG_TRIED = 0x20
FAULT_FLAG_USER = 0x40
# Added by the 2015 RFC (its include/linux/mm.h hunk); unused by the v4.0 core.
FAULT_FLAG_EXEC = 0x80
FAULT_FLAG_PROT = 0x100
FAULT_FLAG_NO_STK_GROW = 0x200

# include/linux/mm.h v4.0 L1092-1115
VM_FAULT_OOM = 0x0001
VM_FAULT_SIGBUS = 0x0002
VM_FAULT_MAJOR = 0x0004
VM_FAULT_WRITE = 0x0008
VM_FAULT_HWPOISON = 0x0010
VM_FAULT_HWPOISON_LARGE = 0x0020
VM_FAULT_SIGSEGV = 0x0040
VM_FAULT_ACCESS = 0x0080  # RFC: "in addition to VM_FAULT_SIGSEGV"
VM_FAULT_NOPAGE = 0x0100
VM_FAULT_LOCKED = 0x0200
VM_FAULT_RETRY = 0x0400
VM_FAULT_FALLBACK = 0x0800
VM_FAULT_HWPOISON_LARGE_MASK = 0xF000
VM_FAULT_ERROR = (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON
                  | VM_FAULT_HWPOISON_LARGE | VM_FAULT_FALLBACK)


def VM_FAULT_GET_HINDEX(fault: int) -> int:
    return (fault >> 12) & 0xF


# include/linux/mm.h v4.0 L114-129
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_GROWSDOWN = 0x100
VM_LOCKED = 0x2000

# Signals (x86, powerpc, arm, arm64, riscv share these numbers).
SIGILL = 4
SIGBUS = 7
SIGKILL = 9
SIGSEGV = 11

SEGV_MAPERR = 1
SEGV_ACCERR = 2
BUS_ADRALN = 1
BUS_ADRERR = 2
BUS_OBJERR = 3
BUS_MCEERR_AR = 4
ILL_ILLOPC = 1
ILL_ILLOPN = 2
SI_KERNEL = 0x80

ENOMEM = 12
EPERM = 1


def _names(prefix: str) -> dict[str, int]:
    return {k: v for k, v in globals().items() if k.startswith(prefix) and isinstance(v, int)}


FAULT_FLAGS: Mapping[str, int] = _names("FAULT_FLAG_")
VM_FAULTS: Mapping[str, int] = {k: v for k, v in _names("VM_FAULT_").items()
                                if k not in ("VM_FAULT_ERROR", "VM_FAULT_HWPOISON_LARGE_MASK")}
VM_FLAGS: Mapping[str, int] = {k: v for k, v in _names("VM_").items()
                               if not k.startswith("VM_FAULT_")}
SIGNALS: Mapping[int, str] = {SIGILL: "SIGILL", SIGBUS: "SIGBUS", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV"}
SI_CODES: Mapping[tuple[int, int], str] = {
    (SIGSEGV, SEGV_MAPERR): "SEGV_MAPERR", (SIGSEGV, SEGV_ACCERR): "SEGV_ACCERR",
    (SIGSEGV, SI_KERNEL): "SI_KERNEL", (SIGBUS, BUS_ADRALN): "BUS_ADRALN",
    (SIGBUS, BUS_ADRERR): "BUS_ADRERR", (SIGBUS, BUS_OBJERR): "BUS_OBJERR",
    (SIGBUS, BUS_MCEERR_AR): "BUS_MCEERR_AR",
    (SIGILL, ILL_ILLOPC): "ILL_ILLOPC", (SIGILL, ILL_ILLOPN): "ILL_ILLOPN",
}


def flag_names(value: int, table: Mapping[str, int]) -> list[str]:
    """Names of the bits set in value, in ascending bit order; unknown bits as hex."""
    names = [n for n, bit in sorted(table.items(), key=lambda kv: kv[1]) if bit and value & bit == bit]
    rest = value & ~sum({bit for n, bit in table.items() if n in names})
    if rest:
        names.append(hex(rest))
    return names


def flags_from_names(names: Iterable[str], table: Mapping[str, int], what: str) -> int:
    """The inverse of flag_names(): names, plus hex for bits without one (the hwpoison index)."""
    value = 0
    for name in names:
        if name.startswith("0x"):
            try:
                value |= int(name, 16)
                continue
            except ValueError:
                pass
        if name not in table:
            raise ValueError(f"unknown {what} {name!r}")
        value |= table[name]
    return value


def describe(value: int, table: Mapping[str, int]) -> str:
    return "|".join(flag_names(value, table)) or "0"
