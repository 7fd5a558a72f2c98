"""riscv's conversion to the RFC's generic handler: what the riscv maintainer would have written on
top of the posting's generic_page_fault(), in the style of the RFC's own x86 conversion.

do_page_fault() keeps the arch prologue (the vmalloc range, faulthandler_disabled()/no mm), turns
scause into FAULT_FLAG_* (15 -> WRITE, 12 -> EXEC; no FAULT_FLAG_PROT: one cause covers invalid
and permission-denied PTEs, so the hardware cannot tell), calls generic_page_fault() and maps
VM_FAULT_* back to riscv's own bad_area / do_sigbus / no_context paths. As in the RFC's x86 hunk,
those paths run after generic_page_fault() has dropped mmap_sem, so they are legacy's without the
up_read(). The same conversion is used with `rfc2015` and `fixed`; the hooks object carries the
arch rules that only `fixed` reads (harness/generic/fixed.py, "Hook ...: riscv ...").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC,
                                      FAULT_FLAG_KILLABLE, FAULT_FLAG_RETRY_NOWAIT,
                                      FAULT_FLAG_USER, FAULT_FLAG_WRITE, SEGV_ACCERR, SEGV_MAPERR,
                                      SIGBUS, SIGSEGV, VM_EXEC, VM_FAULT_ACCESS, VM_FAULT_ERROR,
                                      VM_FAULT_MAJOR, VM_FAULT_RETRY, VM_FAULT_SIGBUS,
                                      VM_FAULT_SIGSEGV, VM_READ, VM_WRITE)

from . import legacy
from .cpu import (EXC_INST_PAGE_FAULT, EXC_LOAD_PAGE_FAULT, EXC_STORE_PAGE_FAULT, VMALLOC_END,
                  VMALLOC_START)
from .legacy import user_mode

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel, Vma

    from .cpu import RiscvFault


class RiscvFaultHooks:
    """arch/riscv/include/asm/fault.h for the generic handler."""

    # Hook plain_down_read (fixed.py): riscv takes mmap_sem with a plain down_read (L80-81);
    # it has no trylock + exception-table guard.
    plain_down_read = True

    def stack_can_grow(self, regs: "RiscvFault", flags: int, address: int, vma: "Vma") -> bool:
        return True  # riscv has no sp rule: VM_GROWSDOWN and expand_stack() decide (L86-90)

    def instruction_pointer(self, regs: "RiscvFault") -> int:
        return regs.sepc

    def access_error(self, regs: "RiscvFault", flags: int, vma: "Vma") -> bool:
        """L99-114 by flags: exec needs VM_EXEC, write VM_WRITE, anything else (a load) VM_READ."""
        if flags & FAULT_FLAG_EXEC:
            return not vma.flags & VM_EXEC
        if flags & FAULT_FLAG_WRITE:
            return not vma.flags & VM_WRITE
        return not vma.flags & VM_READ

    def account_pass(self, k: "Kernel", regs: "RiscvFault", flags: int, fault: int) -> None:
        """L145-160: maj/min counted on the first pass only, from that pass's result, when it is
        neither an error nor a RETRY with a fatal signal pending (both return before it)."""
        if not flags & FAULT_FLAG_ALLOW_RETRY:
            return
        if fault & VM_FAULT_RETRY and k.fatal_signal_pending():
            return
        if fault & VM_FAULT_ERROR:
            return
        if fault & VM_FAULT_MAJOR:
            k.task.maj_flt += 1
            k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MAJ")
        else:
            k.task.min_flt += 1
            k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MIN")


HOOKS = RiscvFaultHooks()


def bad_area(k: "Kernel", regs: "RiscvFault", addr: int, code: int) -> None:
    """Legacy bad_area (L179-185) after generic_page_fault() released mmap_sem: no up_read."""
    if user_mode(regs):
        k.decide("bad_area:user_sigsegv", route=False)
        legacy.do_trap(k, regs, SIGSEGV, code, addr)
        return
    legacy.no_context(k, regs, addr)


def do_sigbus(k: "Kernel", regs: "RiscvFault", addr: int) -> None:
    """Legacy do_sigbus (L214-220) without the up_read."""
    if not user_mode(regs):
        legacy.no_context(k, regs, addr)
        return
    k.decide("do_sigbus:user", route=False)
    legacy.do_trap(k, regs, SIGBUS, BUS_ADRERR, addr)


def fault_flags(regs: "RiscvFault") -> int:
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    if user_mode(regs):
        flags |= FAULT_FLAG_USER
    if regs.scause == EXC_STORE_PAGE_FAULT:
        flags |= FAULT_FLAG_WRITE
    elif regs.scause == EXC_INST_PAGE_FAULT:
        flags |= FAULT_FLAG_EXEC
    else:
        assert regs.scause == EXC_LOAD_PAGE_FAULT, regs.scause
    return flags


def converted_do_page_fault(k: "Kernel", regs: "RiscvFault", generic_page_fault: "GenericPageFault") -> None:
    addr = regs.stval
    if VMALLOC_START <= addr <= VMALLOC_END:
        if user_mode(regs):
            # The converted prologue has no mmap_sem to drop: bad_area here is the nosemaphore one.
            k.decide("vmalloc_fault:user_bad_area")
            bad_area(k, regs, addr, SEGV_MAPERR)
            return
        k.decide("vmalloc_fault:no_context", "init_mm has no entry")
        legacy.no_context(k, regs, addr)
        return
    if k.in_atomic() or k.mm is None:
        k.decide("atomic_or_no_mm:no_context")
        legacy.no_context(k, regs, addr)
        return

    fault = generic_page_fault(k, HOOKS, regs, fault_flags(regs), addr)

    if fault & VM_FAULT_RETRY:
        # Only the retry-abort path returns RETRY (with SIGBUS added in kernel mode): riscv
        # returns to let the fatal signal be handled, in both modes (L129-130).
        k.decide("VM_FAULT_RETRY:return")
        return
    if fault & VM_FAULT_SIGSEGV:
        k.decide("VM_FAULT_SIGSEGV:bad_area")
        bad_area(k, regs, addr, SEGV_ACCERR if fault & VM_FAULT_ACCESS else SEGV_MAPERR)
        return
    if fault & VM_FAULT_SIGBUS:
        k.decide("VM_FAULT_SIGBUS:do_sigbus")
        do_sigbus(k, regs, addr)
        return


__all__ = ["converted_do_page_fault", "fault_flags", "HOOKS", "RiscvFaultHooks",
           "FAULT_FLAG_RETRY_NOWAIT"]
