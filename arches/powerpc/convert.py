"""powerpc's conversion to the RFC's generic handler, written the way the posting converts x86: the
v4.0 prologue of do_page_fault() stays (error-code masking, the kernel-address and atomic/no-mm
exits, DABR on 6xx, store_updates_sp() read outside mmap_sem), the native information becomes
FAULT_FLAG_* bits, generic_page_fault() does the VMA work, and the VM_FAULT_* result goes back to
powerpc's own exits (bad_area_nosemaphore, do_sigbus, the SIGKILL return for kernel fatal signals,
bad_page_fault). The CMO hypervisor page-in accounting is done here, after the generic code: the
RFC author's own example of "done outside the generic code". v4.0 bumps lppaca.page_ins in the
same block that does maj_flt++ (fault.c L448-466), so page_ins counts exactly the faults the kernel
accounted as major. The conversion follows the generic code's major-fault accounting (maj_flt
moved during the call), not the VM_FAULT_MAJOR bit of the returned value: that bit survives on
faults nobody accounted (mm_fault_error's user-OOM exit returns `fault & ~VM_FAULT_ERROR`, MAJOR
included, after pagefault_out_of_memory()). Faults that went through a retry differ by design
(first-attempt vs. once-at-the-end accounting); see normalise.py "ppc-retried-fault-accounting".

The same conversion is used with `rfc2015` and `fixed`; it supplies the powerpc hooks that `fixed`
reads (access_error, stack_check_all_modes); the posting ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.kernel.constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC, FAULT_FLAG_KILLABLE,
                                      FAULT_FLAG_PROT, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                                      PAGE_SHIFT, SEGV_ACCERR, SEGV_MAPERR, SIGKILL, SIGSEGV,
                                      VM_FAULT_ACCESS, VM_FAULT_SIGBUS,
                                      VM_FAULT_SIGSEGV)

from . import legacy
from .cpu import DSISR_DABRMATCH, DSISR_ISSTORE, DSISR_PROTFAULT, SRR1_ISI_PROT, TRAP_ISI
from .legacy import CMO_COUNTER, ISI_C_MASK, PpcParams

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel, Vma

    from .cpu import PpcFault


@dataclass(frozen=True)
class PpcFaultHooks:
    """arch/powerpc/include/asm/fault.h for the generic handler."""

    params: PpcParams
    error_code: int
    store_update_sp: bool
    # Book3S applies the r1 stack rule to kernel-mode faults too (uregs = current->thread.regs).
    stack_check_all_modes: bool = True

    def stack_can_grow(self, regs: "PpcFault", flags: int, address: int, vma: "Vma") -> bool:
        return not legacy.stack_rule_refuses(None, regs, address, vma, self.store_update_sp)  # type: ignore[arg-type]

    def instruction_pointer(self, regs: "PpcFault") -> int:
        return regs.nip

    def access_error(self, regs: "PpcFault", flags: int, vma: "Vma") -> bool:
        """powerpc's rules: 6xx odd DSISR bits, exec needs VM_EXEC on NOEXECUTE CPUs (else any of
        R/W/X), writes need VM_WRITE, reads any of R/W/X; a read protection fault goes on."""
        p = self.params
        if p.config_6xx and self.error_code & legacy.ODD_6XX_MASK:
            return True
        if flags & FAULT_FLAG_EXEC:
            return legacy.exec_access_error(p, vma)
        if flags & FAULT_FLAG_WRITE:
            return not vma.flags & 0x2  # VM_WRITE
        return not vma.flags & 0x7  # VM_READ | VM_WRITE | VM_EXEC


def converted_do_page_fault(k: "Kernel", p: PpcParams, regs: "PpcFault",
                            generic_page_fault: "GenericPageFault") -> int:
    """do_page_fault() on top of generic_page_fault(); returns 0 or the signal for bad_page_fault."""
    address = legacy.fault_address(regs)
    error_code = legacy.entry_error_code(p, regs)
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    is_exec = regs.trap == TRAP_ISI
    is_write = False
    if is_exec:
        error_code &= ISI_C_MASK
    else:
        is_write = bool(error_code & DSISR_ISSTORE)

    if not regs.user and address >= p.task_size:
        k.decide("kernel_address:SIGSEGV")
        return SIGSEGV
    if p.config_6xx and error_code & DSISR_DABRMATCH:
        k.decide("do_break")
        return 0
    if k.in_atomic() or k.mm is None:
        if not regs.user:
            k.decide("atomic_or_no_mm:SIGSEGV")
            return SIGSEGV
        k.decide("atomic_or_no_mm:user_die")
        k.die("Weird page fault")

    store_update_sp = legacy.store_updates_sp(regs) if regs.user else False
    if regs.user:
        flags |= FAULT_FLAG_USER
    if is_write:
        flags |= FAULT_FLAG_WRITE
    if is_exec:
        flags |= FAULT_FLAG_EXEC
    # DSISR_PROTFAULT and SRR1_ISI_PROT are the same bit (0x08000000): a protection fault.
    if error_code & (DSISR_PROTFAULT | SRR1_ISI_PROT):
        flags |= FAULT_FLAG_PROT

    hooks = PpcFaultHooks(p, error_code, store_update_sp)
    maj_flt = k.task.maj_flt
    fault = generic_page_fault(k, hooks, regs, flags, address)
    accounted_major = k.task.maj_flt != maj_flt

    if fault & VM_FAULT_SIGSEGV:
        code = SEGV_ACCERR if fault & VM_FAULT_ACCESS else SEGV_MAPERR
        k.decide("VM_FAULT_SIGSEGV:bad_area_nosemaphore")
        return legacy.bad_area_nosemaphore(k, regs, address, code, is_exec, error_code)
    if fault & VM_FAULT_SIGBUS:
        # powerpc's mm_fault_error(): a pending fatal signal wins over SIGBUS (user: return
        # quietly, the task dies on the way out; kernel: SIGKILL for bad_page_fault).
        if k.fatal_signal_pending():
            if regs.user:
                k.decide("VM_FAULT_SIGBUS:fatal_signal_user", "return 0")
                return 0
            k.decide("VM_FAULT_SIGBUS:fatal_signal_kernel", "return SIGKILL")
            return SIGKILL
        k.decide("VM_FAULT_SIGBUS:do_sigbus")
        return legacy.do_sigbus_nosemaphore(k, regs, address, fault)
    if accounted_major and k.features.get("cmo", False):
        # CONFIG_PPC_SMLPAR: the hypervisor's CMO page-in count, outside the generic code, for
        # exactly the faults accounted as major (v4.0 L448-466 does it beside maj_flt++). Not
        # `fault & VM_FAULT_MAJOR`: the user-OOM exit returns MAJOR on an unaccounted fault.
        for _ in range(1 << (PAGE_SHIFT - 12)):
            k.perf_sw_event(CMO_COUNTER)
    return 0


def converted_handle_page_fault(k: "Kernel", p: PpcParams, regs: "PpcFault",
                                generic_page_fault: "GenericPageFault") -> None:
    rc = converted_do_page_fault(k, p, regs, generic_page_fault)
    if rc:
        legacy.bad_page_fault(k, regs, legacy.fault_address(regs), rc)


__all__ = ["PpcFaultHooks", "converted_do_page_fault", "converted_handle_page_fault", "SIGKILL"]
