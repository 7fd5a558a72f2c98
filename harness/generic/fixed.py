"""The generic page-fault handler of the RFC with every defect fuzzing found corrected.

The same design and decision order as rfc2015.py (mm/fault.c of the posting); each correction is
marked `FIX(<finding signature>)` and docs/generic-api.md lists them with the hooks arches needed.
The hooks are read with getattr() and a default that is the posting's behaviour, so an arch that
does not define one gets exactly the RFC's generic code at that point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernel.constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC, FAULT_FLAG_PROT,
                                FAULT_FLAG_TRIED, FAULT_FLAG_USER, FAULT_FLAG_WRITE, VM_EXEC,
                                VM_FAULT_ACCESS, VM_FAULT_ERROR, VM_FAULT_HWPOISON,
                                VM_FAULT_HWPOISON_LARGE, VM_FAULT_MAJOR, VM_FAULT_OOM,
                                VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_GROWSDOWN,
                                VM_READ, VM_WRITE)

if TYPE_CHECKING:
    from ..arch import NativeFault
    from ..kernel import Kernel, Vma
    from . import ArchFaultHooks

# FIX(x86_64: signal none -> SIGBUS [mm_fault_error:fatal_signal_kernel |
#     generic:mm_fault_error:fatal_signal_kernel], corpus/crashes/*/fatal-signal-sigbus--*): the posting turns
# "fatal signal pending in kernel mode" into VM_FAULT_SIGBUS, and every arch then raises SIGBUS
# through its sig_on_uaccess_error / fixup path, where legacy fixes up with no signal at all.
# The generic code needs a way to say "fix up, raise nothing": this bit (free in v4.0, above
# VM_FAULT_HWPOISON_LARGE_MASK) is returned with VM_FAULT_SIGBUS so arches that ignore it still
# take their kernel-error path.
VM_FAULT_FATAL_SIGNAL = 0x10000


def mm_fault_error(k: "Kernel", regs: "NativeFault", flags: int, address: int, fault: int) -> int:
    if k.fatal_signal_pending() and not flags & FAULT_FLAG_USER:
        k.decide("generic:mm_fault_error:fatal_signal_kernel", "return fault|VM_FAULT_SIGBUS|VM_FAULT_FATAL_SIGNAL")
        return fault | VM_FAULT_SIGBUS | VM_FAULT_FATAL_SIGNAL
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


def access_error(k: "Kernel", hooks: "ArchFaultHooks", regs: "NativeFault", flags: int, vma: "Vma") -> bool:
    # Hook `access_error`: an arch whose legacy permission rules differ from x86's (powerpc's
    # exec/guarded checks, riscv's VM_READ-only reads...) supplies its own; see docs/generic-api.md.
    arch_check = getattr(hooks, "access_error", None)
    if arch_check is not None:
        bad = bool(arch_check(regs, flags, vma))
        if bad:
            k.decide("generic:access_error:arch")
        return bad
    if flags & FAULT_FLAG_WRITE:
        if not vma.flags & VM_WRITE:
            k.decide("generic:access_error:write_to_nonwritable_vma")
            return True
        return False
    if flags & FAULT_FLAG_EXEC:
        # FIX(e.g. arm64: disposition completed -> signal [good_area | generic:bad_access],
        # corpus/crashes/*/exec-checks-vm-write--*): the posting tests VM_WRITE here.
        if not vma.flags & VM_EXEC:
            k.decide("generic:access_error:exec_to_nonexec_vma")
            return True
        return False
    # FIX(x86_64: disposition signal -> livelock [bad_area_access_error | generic:account_minor],
    # corpus/crashes/x86_64/pf-prot-unchecked--*): the posting tests x86's
    # PF_PROT (0x1 == FAULT_FLAG_WRITE, dead here) instead of FAULT_FLAG_PROT, so a read or fetch
    # protection fault on a present PTE reaches handle_mm_fault(), which returns 0 forever.
    if flags & FAULT_FLAG_PROT:
        k.decide("generic:access_error:prot")
        return True
    if not vma.flags & (VM_READ | VM_EXEC | VM_WRITE):
        k.decide("generic:access_error:no_access_vma")
        return True
    return False


def generic_page_fault(k: "Kernel", hooks: "ArchFaultHooks", regs: "NativeFault", flags: int,
                       address: int) -> int:
    tsk = k.task
    assert k.mm is not None
    major = 0
    k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS")

    # Hook plain_down_read: riscv needs it because its handler takes mmap_sem with a plain
    # down_read() and no trylock/exception-table guard, so a contended kernel-mode fault without
    # an extable entry waits for the lock instead of oopsing (riscv v4.15 fault.c L80-81).
    if getattr(hooks, "plain_down_read", False):
        k.down_read()
    elif not k.down_read_trylock():
        if not flags & FAULT_FLAG_USER and not k.search_exception_tables(hooks.instruction_pointer(regs)):
            k.decide("generic:trylock_failed_no_exception_entry", "return VM_FAULT_SIGSEGV")
            return VM_FAULT_SIGSEGV
        k.down_read()

    while True:
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
            # Hook stack_check_all_modes: arm needs it because its stack floor (addr >=
            # FIRST_USER_ADDRESS, arch/arm/mm/fault.c L249-251) also applies to kernel-mode faults.
            if ((flags & FAULT_FLAG_USER or getattr(hooks, "stack_check_all_modes", False))
                    and not hooks.stack_can_grow(regs, flags, address, vma)):
                k.decide("generic:bad_area", "stack_can_grow() refused")
                return _bad_area(k)
            if k.expand_stack(vma, address):
                k.decide("generic:bad_area", "expand_stack failed")
                return _bad_area(k)
            k.decide("generic:good_area", "stack expanded")

        if access_error(k, hooks, regs, flags, vma):
            k.decide("generic:bad_access")
            k.up_read()
            return VM_FAULT_SIGSEGV | VM_FAULT_ACCESS

        fault = k.handle_mm_fault(vma, address, flags)
        major |= fault & VM_FAULT_MAJOR
        # Hook account_pass: riscv needs it because it counts maj/min per pass (first pass only,
        # from that pass's result, RETRY included) rather than once at the end; when an arch
        # supplies it, it does all maj/min accounting and the end-of-fault accounting is skipped.
        account_pass = getattr(hooks, "account_pass", None)
        if account_pass is not None:
            account_pass(k, regs, flags, fault)

        if fault & VM_FAULT_RETRY:
            if flags & FAULT_FLAG_ALLOW_RETRY:
                flags &= ~FAULT_FLAG_ALLOW_RETRY
                flags |= FAULT_FLAG_TRIED
                if not k.fatal_signal_pending():
                    k.decide("generic:retry")
                    k.down_read()
                    continue
            if flags & FAULT_FLAG_USER:
                k.decide("generic:retry_abort_user", "return 0")
                return 0
            # Hook kernel_retry_fatal_returns: arm needs it because v4.0 arm returns to the
            # faulting kernel instruction on RETRY with a fatal signal (fault.c L317-318; changed
            # only by 746a272e "ARM: 8692/1" in 2017) instead of taking the fixup.
            if getattr(hooks, "kernel_retry_fatal_returns", False) and k.fatal_signal_pending():
                k.decide("generic:retry_abort_kernel", "return 0 (arch: kernel_retry_fatal_returns)")
                return 0
            k.decide("generic:retry_abort_kernel", "return fault|VM_FAULT_SIGBUS")
            return fault | VM_FAULT_SIGBUS
        break

    k.up_read()
    if fault & VM_FAULT_ERROR:
        k.decide("generic:mm_fault_error")
        return mm_fault_error(k, regs, flags, address, fault)

    if account_pass is not None:
        k.decide("generic:account_pass")
        return fault | major
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
    k.up_read()
    return VM_FAULT_SIGSEGV
