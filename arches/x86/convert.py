"""x86's conversion to the generic handler: the RFC's arch/x86/mm/fault.c as posted (`rfc2015`)
and as corrected (`fixed`).

Model of the RFC posting's arch/x86 hunks: __do_page_fault keeps its prologue (kernel addresses,
PF_RSVD, SMAP, atomic/no mm), turns the error code into FAULT_FLAG_* bits, calls
generic_page_fault() and turns the VM_FAULT_* result back into bad_area()/do_sigbus(). The
helpers the posting leaves in place (no_context, do_sigbus, ...) are legacy.py's; the posting's
__bad_area() is v4.0's __bad_area_nosemaphore() renamed, with no up_read().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from harness.generic.fixed import VM_FAULT_FATAL_SIGNAL
from harness.kernel.constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_KILLABLE, FAULT_FLAG_PROT,
                                      FAULT_FLAG_USER, FAULT_FLAG_WRITE, SEGV_ACCERR, SEGV_MAPERR,
                                      VM_FAULT_ACCESS, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV)

from . import legacy
from .legacy import PF_PROT, PF_RSVD, PF_USER, PF_WRITE, X86Params

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel, Vma

    from .cpu import X86Fault


@dataclass(frozen=True)
class X86FaultHooks:
    """The RFC's arch/x86/include/asm/fault.h, plus GET_IP()."""

    params: X86Params

    def stack_can_grow(self, regs: "X86Fault", flags: int, address: int, vma: "Vma") -> bool:
        # "Accessing the stack below %sp is always a bug": the cushion covers enter and pusha.
        cushion = 65536 + 32 * self.params.word_bytes
        return (address + cushion) % (1 << (8 * self.params.word_bytes)) >= regs.sp

    def instruction_pointer(self, regs: "X86Fault") -> int:
        return regs.ip


def bad_area(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int, si_code: int) -> None:
    """RFC: `static inline void bad_area(regs, error_code, address, si_code)` -> __bad_area(), which
    is v4.0's __bad_area_nosemaphore() renamed: no mmap_sem is held by the time it is called."""
    legacy.__bad_area_nosemaphore(k, p, regs, error_code, address, si_code)


ResultMapper = Callable[["Kernel", X86Params, "X86Fault", int, int, int], bool]


def converted_do_page_fault(k: "Kernel", p: X86Params, regs: "X86Fault", smap: bool,
                            generic_page_fault: "GenericPageFault", finish: ResultMapper) -> None:
    """RFC __do_page_fault(): v4.0's prologue, then flags -> generic_page_fault() -> `finish`."""
    error_code, address = regs.error_code, regs.cr2
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE

    if address >= p.task_size_max:
        if not error_code & (PF_RSVD | PF_USER | PF_PROT):
            if legacy.vmalloc_fault(k, p, address) >= 0:
                return
        if legacy.spurious_fault(k, p, error_code, address):
            return
        k.decide("kernel_address:bad_area")
        bad_area(k, p, regs, error_code, address, SEGV_MAPERR)
        return
    if error_code & PF_RSVD:
        legacy.pgtable_bad(k, regs, error_code, address)
    if legacy.smap_violation(k, p, error_code, regs, smap):
        k.decide("smap_violation:bad_area")
        bad_area(k, p, regs, error_code, address, SEGV_MAPERR)
        return
    if k.in_atomic() or k.mm is None:
        k.decide("atomic_or_no_mm:bad_area")
        bad_area(k, p, regs, error_code, address, SEGV_MAPERR)
        return
    if regs.user:
        error_code |= PF_USER

    if error_code & PF_USER:
        flags |= FAULT_FLAG_USER
    if error_code & PF_WRITE:
        flags |= FAULT_FLAG_WRITE
    if error_code & PF_PROT:
        flags |= FAULT_FLAG_PROT

    fault = generic_page_fault(k, X86FaultHooks(p), regs, flags, address)
    if finish(k, p, regs, error_code, address, fault):
        return
    # The posting reaches check_v8086_mode() after every result without SIGSEGV/SIGBUS, including
    # the user OOM and retry-abort returns, where v4.0 returned before it.
    legacy.check_v8086_mode(k, p, regs, address)


def finish_rfc2015(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int, fault: int) -> bool:
    """The posting's result mapping, literally: note the MAPERR/ACCERR choice as written."""
    if fault & VM_FAULT_SIGSEGV:
        k.decide("VM_FAULT_SIGSEGV:bad_area")
        bad_area(k, p, regs, error_code, address,
                 SEGV_MAPERR if fault & VM_FAULT_ACCESS else SEGV_ACCERR)
        return True
    if fault & VM_FAULT_SIGBUS:
        k.decide("VM_FAULT_SIGBUS:do_sigbus")
        legacy.do_sigbus(k, p, regs, error_code, address, fault)
        return True
    return False


def finish_fixed(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int, fault: int) -> bool:
    if fault & VM_FAULT_FATAL_SIGNAL:
        # FIX(x86_64: signal none -> SIGBUS [mm_fault_error:fatal_signal_kernel |
        #     generic:mm_fault_error:fatal_signal_kernel]):
        # v4.0 fixes up with signal 0 so sig_on_uaccess_error raises nothing.
        k.decide("VM_FAULT_FATAL_SIGNAL:no_context")
        legacy.no_context(k, p, regs, error_code, address, 0, 0)
        return True
    if fault & VM_FAULT_SIGSEGV:
        # FIX(x86_64: signal.code SEGV_MAPERR -> SEGV_ACCERR [bad_area | generic:bad_area]):
        # VM_FAULT_ACCESS means an access error, SEGV_ACCERR; the posting has them swapped.
        k.decide("VM_FAULT_SIGSEGV:bad_area")
        bad_area(k, p, regs, error_code, address,
                 SEGV_ACCERR if fault & VM_FAULT_ACCESS else SEGV_MAPERR)
        return True
    if fault & VM_FAULT_SIGBUS:
        k.decide("VM_FAULT_SIGBUS:do_sigbus")
        legacy.do_sigbus(k, p, regs, error_code, address, fault)
        return True
    return False
