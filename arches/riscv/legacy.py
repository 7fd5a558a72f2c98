"""Model of the first upstream riscv page-fault handler, arch/riscv/mm/fault.c as added for v4.15
(07037db5d479 "RISC-V: Paging and MMU"; the blob modelled is 148c98ca9b45, the one before the 2018
vm_fault_t conversion). riscv is not in v4.0: this version postdates the 2015 RFC, which makes it
the test of whether the RFC's generic design fits an arch it was not written for. Line numbers
below are that blob's, as the fact sheet linux-4.0-faults-arm64-arm-mips-m68k-riscv.md §5 gives
them; the simulated kernel around it is v4.0's (the core's handle_mm_fault contract is the same).

Not modelled, and why:
  * The interrupt-enable test on sstatus.SPIE (L65-66): no observable effect in the model.
  * vmalloc_fault's pgd/p4d/pud/pmd sync from init_mm (L222-284): the simulated init_mm maps no
    vmalloc address, so a kernel fault there always finds pgd_k not present and goes to
    no_context. The user-mode branch (goto bad_area with an up_read of an mmap_sem that was
    never taken) is modelled exactly; the simulated kernel reports that as a kernel bug.
  * The `panic("unhandled cause")` default (L113-114): do_page_fault is reached only through
    excp_vect_table for causes 12, 13 and 15, so it is unreachable.
  * show_unhandled_signals printing in do_trap, bust_spinlocks and the oops text: no effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_KILLABLE,
                                      FAULT_FLAG_TRIED, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                                      SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGKILL, SIGSEGV, VM_EXEC,
                                      VM_FAULT_ERROR, VM_FAULT_MAJOR, VM_FAULT_OOM,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_GROWSDOWN, VM_READ,
                                      VM_WRITE)

from .cpu import (EXC_INST_PAGE_FAULT, EXC_LOAD_PAGE_FAULT, EXC_STORE_PAGE_FAULT, SR_SPP,
                  VMALLOC_END, VMALLOC_START)

if TYPE_CHECKING:
    from harness.kernel import Kernel, Vma

    from .cpu import RiscvFault

BUG_UNEXPECTED_ERROR = "riscv do_page_fault: BUG() on a VM_FAULT_ERROR that is neither OOM nor SIGBUS"


def user_mode(regs: "RiscvFault") -> bool:
    """asm/ptrace.h: user_mode(regs) is !(regs->sstatus & SR_SPP)."""
    return not regs.sstatus & SR_SPP


def do_trap(k: "Kernel", regs: "RiscvFault", signo: int, code: int, addr: int) -> None:
    """kernel/traps.c do_trap(): (print if show_unhandled_signals) force_sig_info with si_addr."""
    k.force_sig_info_fault(signo, code, addr, 0)


def no_context(k: "Kernel", regs: "RiscvFault", addr: int) -> None:
    """L187-201: fixup_exception() on sepc, else die("Oops") and do_exit(SIGKILL)."""
    if k.fixup_exception(regs.sepc):
        k.decide("no_context:fixup", route=False)
        return
    k.decide("no_context:oops", route=False)
    k.die("Oops")
    k.do_exit(SIGKILL)


def bad_area(k: "Kernel", regs: "RiscvFault", addr: int, code: int) -> None:
    """L179-185: up_read(mmap_sem); a user gets do_trap(SIGSEGV, code); the kernel falls into
    no_context."""
    k.up_read()
    if user_mode(regs):
        k.decide("bad_area:user_sigsegv", route=False)
        do_trap(k, regs, SIGSEGV, code, addr)
        return
    no_context(k, regs, addr)


def out_of_memory(k: "Kernel", regs: "RiscvFault", addr: int) -> None:
    """L207-212."""
    k.up_read()
    if not user_mode(regs):
        no_context(k, regs, addr)
        return
    k.pagefault_out_of_memory()


def do_sigbus(k: "Kernel", regs: "RiscvFault", addr: int) -> None:
    """L214-220: always BUS_ADRERR (no hwpoison distinction)."""
    k.up_read()
    if not user_mode(regs):
        no_context(k, regs, addr)
        return
    k.decide("do_sigbus:user", route=False)
    do_trap(k, regs, SIGBUS, BUS_ADRERR, addr)


def vmalloc_fault(k: "Kernel", regs: "RiscvFault", addr: int) -> None:
    """L222-284: a user goes to bad_area (mmap_sem not held: an unbalanced up_read, L180); the
    kernel copies init_mm's entries, and with none present (always, here) goes to no_context."""
    if user_mode(regs):
        k.decide("vmalloc_fault:user_bad_area")
        bad_area(k, regs, addr, SEGV_MAPERR)
        return
    k.decide("vmalloc_fault:no_context", "init_mm has no entry")
    no_context(k, regs, addr)


def access_error(cause: int, vma: "Vma") -> bool:
    """L99-114: exact per-cause permission; a load needs VM_READ (no R|W|X fallback)."""
    if cause == EXC_INST_PAGE_FAULT:
        return not vma.flags & VM_EXEC
    if cause == EXC_LOAD_PAGE_FAULT:
        return not vma.flags & VM_READ
    if cause == EXC_STORE_PAGE_FAULT:
        return not vma.flags & VM_WRITE
    raise AssertionError(f"unhandled cause {cause}")  # panic(); unreachable via excp_vect_table


def do_page_fault(k: "Kernel", regs: "RiscvFault") -> None:
    """L38-220."""
    cause, addr = regs.scause, regs.stval
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    code = SEGV_MAPERR
    tsk, mm = k.task, k.mm

    if VMALLOC_START <= addr <= VMALLOC_END:  # L61-62, inclusive
        vmalloc_fault(k, regs, addr)
        return

    if k.in_atomic() or mm is None:  # L72-73: faulthandler_disabled() || !mm
        k.decide("atomic_or_no_mm:no_context")
        no_context(k, regs, addr)
        return

    if user_mode(regs):
        flags |= FAULT_FLAG_USER

    k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS")  # L78

    k.down_read()  # L80-81: retry: plain down_read, no trylock
    while True:
        vma = k.find_vma(addr)
        if vma is None:
            k.decide("bad_area", "no vma")
            bad_area(k, regs, addr, code)
            return
        if vma.start > addr:
            if not vma.flags & VM_GROWSDOWN:
                k.decide("bad_area", "vma above, not VM_GROWSDOWN")
                bad_area(k, regs, addr, code)
                return
            if k.expand_stack(vma, addr):
                k.decide("bad_area", "expand_stack failed")
                bad_area(k, regs, addr, code)
                return
        k.decide("good_area")
        code = SEGV_ACCERR  # L97
        if access_error(cause, vma):
            k.decide("access_error", f"scause {cause}")
            bad_area(k, regs, addr, code)
            return
        if cause == EXC_STORE_PAGE_FAULT:
            flags |= FAULT_FLAG_WRITE

        fault = k.handle_mm_fault(vma, addr, flags)  # L122, raw address

        if fault & VM_FAULT_RETRY and k.fatal_signal_pending():  # L129-130
            k.decide("retry_fatal_signal", "return")
            return

        if fault & VM_FAULT_ERROR:  # L132-138
            if fault & VM_FAULT_OOM:
                k.decide("mm_fault_error:oom")
                out_of_memory(k, regs, addr)
                return
            if fault & VM_FAULT_SIGBUS:
                k.decide("mm_fault_error:sigbus")
                do_sigbus(k, regs, addr)
                return
            k.decide("mm_fault_error:BUG")
            k.BUG(BUG_UNEXPECTED_ERROR)

        if flags & FAULT_FLAG_ALLOW_RETRY:  # L145-170: first pass only
            if fault & VM_FAULT_MAJOR:
                tsk.maj_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MAJ")
                k.decide("account_major", route=False)
            else:
                tsk.min_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MIN")
                k.decide("account_minor", route=False)
            if fault & VM_FAULT_RETRY:
                flags &= ~FAULT_FLAG_ALLOW_RETRY
                flags |= FAULT_FLAG_TRIED
                k.decide("retry")
                k.down_read()  # mmap_sem was dropped by __lock_page_or_retry
                continue
        break

    k.up_read()  # L172
    k.decide("done")
