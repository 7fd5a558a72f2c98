"""32-bit ARM's conversion to the RFC's generic handler: what arch/arm/mm/fault.c would look like
on top of generic_page_fault(), in the style of the RFC's x86 hunk.

Kept as arch code (legacy.py's functions): the abort models, the fsr_info/ifsr_info dispatch,
do_translation_fault's TASK_SIZE test and vmalloc sync, do_sect_fault, do_bad and arm_notify_die,
__do_kernel_fault, __do_user_fault, do_bad_area. Only do_page_fault()'s body is replaced:
  * in_atomic() || !mm -> no_context, as before (before any flags, like the x86 hunk);
  * user_mode -> FAULT_FLAG_USER; FSR_WRITE (WnR) -> FAULT_FLAG_WRITE; FSR_LNX_PF (prefetch
    abort) -> FAULT_FLAG_EXEC;
  * FAULT_FLAG_PROT is deliberately NOT set although the FS code tells a permission fault
    (FS 13/15) from a translation fault: ARM Linux tracks dirty pages in software (a clean
    writable pte is hardware read-only, cpu_v7_set_pte_ext), so a permission fault is routinely
    a fault the core must handle, and a read permission fault is no evidence of an access error;
    v4.0 arm's access_error never looks at the FS class.
  * the result: kernel mode and any error -> __do_kernel_fault (no_context); user SIGBUS ->
    SIGBUS/BUS_ADRERR (tested first, as v4.0 tests VM_FAULT_SIGBUS before the SIGSEGV branch);
    user SIGSEGV -> SEGV_ACCERR with VM_FAULT_ACCESS, else SEGV_MAPERR. VM_FAULT_OOM in user mode
    never comes back: the generic code calls pagefault_out_of_memory() itself.
The same conversion serves `rfc2015` and `fixed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC,
                                      FAULT_FLAG_KILLABLE, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                                      SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV, VM_FAULT_ACCESS,
                                      VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV)

from . import legacy
from .legacy import FIRST_USER_ADDRESS, FSR_LNX_PF, FSR_WRITE, user_mode

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel, Vma

    from .cpu import ArmFault


@dataclass(frozen=True)
class ArmFaultHooks:
    """arch/arm/include/asm/fault.h for the generic handler."""

    # Hook stack_check_all_modes (fixed.py): arm's stack floor applies in kernel mode too.
    stack_check_all_modes: bool = True
    # Hook kernel_retry_fatal_returns (fixed.py): v4.0 arm returns on RETRY + fatal signal.
    kernel_retry_fatal_returns: bool = True

    def stack_can_grow(self, regs: "ArmFault", flags: int, address: int, vma: "Vma") -> bool:
        # "Don't allow expansion below FIRST_USER_ADDRESS" (fault.c L249-251); no sp rule.
        return address >= FIRST_USER_ADDRESS

    def instruction_pointer(self, regs: "ArmFault") -> int:
        return regs.pc  # regs->ARM_pc


def converted_do_page_fault(k: "Kernel", addr: int, fsr: int, regs: "ArmFault",
                            generic_page_fault: "GenericPageFault") -> int:
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    if k.in_atomic() or k.mm is None:
        k.decide("no_context", "in_atomic or no mm")
        legacy.__do_kernel_fault(k, addr, fsr, regs)
        return 0
    if user_mode(regs):
        flags |= FAULT_FLAG_USER
    if fsr & FSR_WRITE:
        flags |= FAULT_FLAG_WRITE
    if fsr & FSR_LNX_PF:
        flags |= FAULT_FLAG_EXEC

    fault = generic_page_fault(k, ArmFaultHooks(), regs, flags, addr)
    if not fault & (VM_FAULT_SIGSEGV | VM_FAULT_SIGBUS):
        return 0
    if not user_mode(regs):
        k.decide("no_context")
        legacy.__do_kernel_fault(k, addr, fsr, regs)
        return 0
    if fault & VM_FAULT_SIGBUS:
        k.decide("sigbus")
        legacy.__do_user_fault(k, addr, fsr, SIGBUS, BUS_ADRERR, regs)
        return 0
    code = SEGV_ACCERR if fault & VM_FAULT_ACCESS else SEGV_MAPERR
    k.decide("bad_access" if code == SEGV_ACCERR else "bad_area")
    legacy.__do_user_fault(k, addr, fsr, SIGSEGV, code, regs)
    return 0


def handle_abort(k: "Kernel", regs: "ArmFault", generic_page_fault: "GenericPageFault") -> None:
    """The converted handler the harness calls: the arch dispatch with do_page_fault replaced."""
    def page_fault(k: "Kernel", addr: int, fsr: int, regs: "ArmFault") -> int:
        return converted_do_page_fault(k, addr, fsr, regs, generic_page_fault)
    legacy.dispatch(k, regs, page_fault)
