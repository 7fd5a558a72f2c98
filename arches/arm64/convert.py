"""arm64's conversion to the RFC's generic handler: what the arm64 maintainer would have written on top of
generic_page_fault() (the RFC posted only x86's). Used unchanged with `rfc2015` and `fixed`.

Only do_page_fault() (arch/arm64/mm/fault.c v4.0 L194-335) is replaced; the entry code, do_mem_abort's
fault_info[] dispatch, do_translation_fault, do_bad and __do_user_fault/__do_kernel_fault stay as they
are (legacy.py). The converted do_page_fault:
  * keeps the prologue: in_atomic() || !mm -> no_context (L214-215);
  * native -> FAULT_FLAG_*: USER from PSTATE; EXEC from the entry code's software exec bit (el0_ia);
    WRITE from ESR.WnR && !ESR.CM (not for an exec fault); PROT when the DFSC is a permission fault
    (0x0D-0x0F) - the only place arm64 tells a protection fault from a missing translation;
  * passes the page-aligned address, as arm64 always has (L185: handle_mm_fault(..., addr & PAGE_MASK));
    find_vma/expand_stack give the same answers for it, so only handle_mm_fault's argument is at stake;
  * does not repeat arm64's "retry with a fatal signal pending: return 0" (L256-257): the generic code
    owns the retry loop. In kernel mode the posting returns fault|VM_FAULT_SIGBUS there (its
    "XXX mimmic x86"), so the conversion takes no_context; v4.0 arm64 returns to the faulting
    instruction instead (until "arm64: mm: abort uaccess retries upon fatal signal", Mark Rutland, 2017),
    which `fixed` expresses through the existing hook kernel_retry_fatal_returns (added for arm);
  * maps VM_FAULT_SIGSEGV / VM_FAULT_SIGBUS back to arm64's paths: kernel -> no_context
    (__do_kernel_fault); user SIGBUS -> SIGBUS/BUS_ADRERR; user SIGSEGV -> SEGV_ACCERR when
    VM_FAULT_ACCESS is set, else SEGV_MAPERR (the maintainer's reading of the RFC's contract, not x86's
    swapped one). VM_FAULT_OOM for a user fault was dealt with inside the generic code.
Hooks: stack_can_grow (always true: arm64 has no stack-pointer rule, L187-191), instruction_pointer
(regs->pc), and, read only by `fixed`: access_error (arm64's any-permission-in-the-mask rule, L180) and
kernel_retry_fatal_returns (L256-257 in kernel mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC,
                                      FAULT_FLAG_KILLABLE, FAULT_FLAG_PROT, FAULT_FLAG_USER,
                                      FAULT_FLAG_WRITE, PAGE_MASK, SEGV_ACCERR, SEGV_MAPERR, SIGBUS,
                                      SIGSEGV, VM_EXEC, VM_FAULT_ACCESS,
                                      VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_READ, VM_WRITE)

from . import legacy
from .cpu import ESR_CM, ESR_WNR
from .legacy import ESR_LNX_EXEC, user_mode

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel, Vma

    from .cpu import Arm64Fault

DFSC_PERMISSION = (0x0D, 0x0E, 0x0F)  # permission fault, levels 1-3 (fault_info[] L392-394)


@dataclass(frozen=True)
class Arm64FaultHooks:
    """arch/arm64/include/asm/fault.h as the arm64 maintainer would write it for the RFC."""

    # fixed.py Hook kernel_retry_fatal_returns: v4.0 arm64 returns 0 on RETRY with a fatal signal
    # pending in kernel mode too (fault.c L256-257), re-executing the faulting uaccess.
    kernel_retry_fatal_returns = True

    def stack_can_grow(self, regs: "Arm64Fault", flags: int, address: int, vma: "Vma") -> bool:
        # v4.0 __do_page_fault (L187-191) grows any VM_GROWSDOWN vma; there is no sp test.
        return True

    def instruction_pointer(self, regs: "Arm64Fault") -> int:
        return regs.pc

    def access_error(self, regs: "Arm64Fault", flags: int, vma: "Vma") -> bool:
        # v4.0 L200, L220-225, L180: exec needs VM_EXEC, write needs VM_WRITE, anything else any of
        # R/W/X; a protection fault is not an error by itself (a read permission fault on a readable
        # vma goes to handle_mm_fault).
        if flags & FAULT_FLAG_EXEC:
            mask = VM_EXEC
        elif flags & FAULT_FLAG_WRITE:
            mask = VM_WRITE
        else:
            mask = VM_READ | VM_WRITE | VM_EXEC
        return not (vma.flags & mask)


HOOKS = Arm64FaultHooks()


def fault_flags(regs: "Arm64Fault", esr: int) -> int:
    """The FAULT_FLAG_* word for a fault do_page_fault() was handed (esr as do_mem_abort got it)."""
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    if user_mode(regs):
        flags |= FAULT_FLAG_USER
    if esr & ESR_LNX_EXEC:
        flags |= FAULT_FLAG_EXEC
    elif (esr & ESR_WNR) and not (esr & ESR_CM):
        flags |= FAULT_FLAG_WRITE
    if (esr & 0x3F) in DFSC_PERMISSION:
        flags |= FAULT_FLAG_PROT
    return flags


def converted_do_page_fault(k: "Kernel", regs: "Arm64Fault", addr: int, esr: int,
                            generic_page_fault: "GenericPageFault") -> int:
    if k.in_atomic() or k.mm is None:
        k.decide("atomic_or_no_mm:no_context")
        legacy.__do_kernel_fault(k, addr, esr, regs)
        return 0

    flags = fault_flags(regs, esr)
    fault = generic_page_fault(k, HOOKS, regs, flags, addr & PAGE_MASK)

    if not fault & (VM_FAULT_SIGSEGV | VM_FAULT_SIGBUS):
        return 0
    if not user_mode(regs):
        k.decide("kernel:no_context")
        legacy.__do_kernel_fault(k, addr, esr, regs)
        return 0
    if fault & VM_FAULT_SIGBUS:
        k.decide("VM_FAULT_SIGBUS:sigbus")
        sig, code = SIGBUS, BUS_ADRERR
    else:
        code = SEGV_ACCERR if fault & VM_FAULT_ACCESS else SEGV_MAPERR
        sig = SIGSEGV
        k.decide("VM_FAULT_SIGSEGV:sigsegv", "SEGV_ACCERR" if code == SEGV_ACCERR else "SEGV_MAPERR")
    legacy.__do_user_fault(k, addr, esr, sig, code, regs)
    return 0


def handle(k: "Kernel", regs: "Arm64Fault", generic_page_fault: "GenericPageFault") -> None:
    """The converted path from the exception vector: legacy entry and dispatch, converted do_page_fault."""

    def dpf(k2: "Kernel", regs2: "Arm64Fault", addr: int, esr: int) -> int:
        return converted_do_page_fault(k2, regs2, addr, esr, generic_page_fault)

    legacy.el_sync(k, regs, dpf)
