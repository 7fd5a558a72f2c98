"""The generic page-fault handler exactly as posted on 2015-03-01 (mm/fault.c in the RFC), mistakes included.

Model of: ../shared/reference/generic-page-fault-rfc-2015.txt, new file mm/fault.c
(mm_fault_error, access_error, generic_page_fault). Decision labels are the C's own names.
`fixed.py` is the same function with each defect fuzzing found corrected.

Where the posted C would not compile or is ambiguous, the literal reading is taken:
  * access_error() tests `flags & PF_PROT`. PF_PROT is the x86 error-code enum local to
    arch/x86/mm/fault.c (value 0x1), not visible in mm/fault.c. Read literally as the value 0x1,
    which in a FAULT_FLAG_* word is FAULT_FLAG_WRITE; write faults have already returned above it,
    so the test is never true. (The intended FAULT_FLAG_PROT is what `fixed` tests.)
  * access_error()'s exec branch tests VM_WRITE, as posted.
  * `return FAULT_NO_ERR;` names an undefined macro; read as 0 ("no error").
  * include/linux/fault.h declares `unsigned long flags`, mm/fault.c defines `unsigned int flags`;
    the value is the same either way.
  * `retry:` sits inside the trylock-failed block; the goto re-enters at the blocking down_read().
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernel.constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC, FAULT_FLAG_TRIED,
                                FAULT_FLAG_USER, FAULT_FLAG_WRITE, VM_EXEC, VM_FAULT_ACCESS,
                                VM_FAULT_ERROR, VM_FAULT_HWPOISON, VM_FAULT_HWPOISON_LARGE,
                                VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_RETRY, VM_FAULT_SIGBUS,
                                VM_FAULT_SIGSEGV, VM_GROWSDOWN, VM_READ, VM_WRITE)

if TYPE_CHECKING:
    from ..arch import NativeFault
    from ..kernel import Kernel, Vma
    from . import ArchFaultHooks

PF_PROT_AS_POSTED = 0x1  # x86's enum x86_pf_error_code PF_PROT, used on FAULT_FLAG_* bits
FAULT_NO_ERR = 0         # undefined in the posting


def mm_fault_error(k: "Kernel", regs: "NativeFault", flags: int, address: int, fault: int) -> int:
    """RFC mm/fault.c mm_fault_error()."""
    if k.fatal_signal_pending() and not flags & FAULT_FLAG_USER:
        k.decide("generic:mm_fault_error:fatal_signal_kernel", "return fault|VM_FAULT_SIGBUS")
        return fault | VM_FAULT_SIGBUS
    if fault & VM_FAULT_OOM:
        if not flags & FAULT_FLAG_USER:
            k.decide("generic:mm_fault_error:oom_kernel", "return fault|VM_FAULT_SIGSEGV")
            return fault | VM_FAULT_SIGSEGV
        k.decide("generic:mm_fault_error:oom_user", "pagefault_out_of_memory")
        k.pagefault_out_of_memory()
    else:
        if fault & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE):
            k.decide("generic:mm_fault_error:sigbus", "return fault|VM_FAULT_SIGBUS")
            return fault | VM_FAULT_SIGBUS
        elif fault & VM_FAULT_SIGSEGV:
            k.decide("generic:mm_fault_error:sigsegv", "return fault")
            return fault
        else:
            k.decide("generic:mm_fault_error:BUG")
            k.BUG("mm_fault_error: unhandled VM_FAULT_ERROR bits")
    return fault & ~VM_FAULT_ERROR


def access_error(k: "Kernel", regs: "NativeFault", flags: int, vma: "Vma") -> bool:
    """RFC mm/fault.c access_error(), as posted (see the module docstring for the readings)."""
    if flags & FAULT_FLAG_WRITE:
        if not vma.flags & VM_WRITE:
            k.decide("generic:access_error:write_to_nonwritable_vma")
            return True
        return False
    if flags & FAULT_FLAG_EXEC:
        if not vma.flags & VM_WRITE:  # as posted: VM_WRITE, not VM_EXEC
            k.decide("generic:access_error:exec_to_nonwritable_vma")
            return True
        return False
    if flags & PF_PROT_AS_POSTED:
        k.decide("generic:access_error:prot")
        return True
    if not vma.flags & (VM_READ | VM_EXEC | VM_WRITE):
        k.decide("generic:access_error:no_access_vma")
        return True
    return False


def generic_page_fault(k: "Kernel", hooks: "ArchFaultHooks", regs: "NativeFault", flags: int,
                       address: int) -> int:
    """RFC mm/fault.c generic_page_fault(regs, tsk, flags, address)."""
    tsk = k.task
    assert k.mm is not None
    major = 0
    k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS")

    if not k.down_read_trylock():
        if not flags & FAULT_FLAG_USER and not k.search_exception_tables(hooks.instruction_pointer(regs)):
            k.decide("generic:trylock_failed_no_exception_entry", "return VM_FAULT_SIGSEGV")
            return VM_FAULT_SIGSEGV
        k.down_read()
    # else: might_sleep()

    while True:  # the `retry:` label
        vma = k.find_vma(address)
        if vma is None:
            k.decide("generic:bad_area", "no vma")
            return _bad_area(k)
        if vma.start <= address:
            k.decide("generic:good_area")
        else:
            if not vma.flags & VM_GROWSDOWN:
                k.decide("generic:bad_area", "vma above, not VM_GROWSDOWN")
                return _bad_area(k)
            if flags & FAULT_FLAG_USER and not hooks.stack_can_grow(regs, flags, address, vma):
                k.decide("generic:bad_area", "stack_can_grow() refused")
                return _bad_area(k)
            if k.expand_stack(vma, address):
                k.decide("generic:bad_area", "expand_stack failed")
                return _bad_area(k)
            k.decide("generic:good_area", "stack expanded")

        if access_error(k, regs, flags, vma):
            k.decide("generic:bad_access")
            k.up_read()
            return VM_FAULT_SIGSEGV | VM_FAULT_ACCESS

        fault = k.handle_mm_fault(vma, address, flags)
        major |= fault & VM_FAULT_MAJOR

        if fault & VM_FAULT_RETRY:
            if flags & FAULT_FLAG_ALLOW_RETRY:
                flags &= ~FAULT_FLAG_ALLOW_RETRY
                flags |= FAULT_FLAG_TRIED
                if not k.fatal_signal_pending():
                    k.decide("generic:retry")
                    k.down_read()
                    continue
            if flags & FAULT_FLAG_USER:
                k.decide("generic:retry_abort_user", "return FAULT_NO_ERR")
                return FAULT_NO_ERR
            k.decide("generic:retry_abort_kernel", "return fault|VM_FAULT_SIGBUS")
            return fault | VM_FAULT_SIGBUS
        break

    k.up_read()
    if fault & VM_FAULT_ERROR:
        k.decide("generic:mm_fault_error")
        return mm_fault_error(k, regs, flags, address, fault)

    if major:
        tsk.maj_flt += 1
        k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MAJ")
        fault |= VM_FAULT_MAJOR
        k.decide("generic:account_major")
    else:
        tsk.min_flt += 1
        k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MIN")
        k.decide("generic:account_minor")
    return fault


def _bad_area(k: "Kernel") -> int:
    """The `bad_area:` label: up_read, return VM_FAULT_SIGSEGV."""
    k.up_read()
    return VM_FAULT_SIGSEGV
