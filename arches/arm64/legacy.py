"""Model of the Linux 4.0 arm64 data/instruction-abort path: arch/arm64/kernel/entry.S (el0_da, el0_ia,
el1_da, el0_sp_pc/el1_sp_pc, el1_inv) and arch/arm64/mm/fault.c (blob 96da131): do_mem_abort with its
fault_info[] table, do_translation_fault, do_bad_area, do_page_fault/__do_page_fault, __do_user_fault,
__do_kernel_fault; plus traps.c arm64_notify_die() and bad_mode().

Functions keep the C's names and decision order; line numbers are v4.0's (fault.c unless named).
The entry and dispatch layers (el_sync, do_mem_abort, do_translation_fault) take the do_page_fault
implementation as a parameter: the converted handler (convert.py) replaces only do_page_fault, as the
RFC's conversion would, and shares everything around it.

Not modelled, and why:
  * CONFIG_DEBUG_VM's extra extable check after a successful trylock (L243-246): a debug option that is
    off in production configs; with it on, a kernel fault from outside the extable would oops earlier.
  * local_irq_enable / enable_dbg / ct_user_exit, show_pte, show_regs, the "unhandled" printks and
    show_unhandled_signals: no effect on what the fault does.
  * do_debug_exception / hook_fault_code: not reachable from the catalogue's aborts.
  * HWPOISON: arm64 v4.0 does not select ARCH_SUPPORTS_MEMORY_FAILURE, so no hwpoison entry can exist;
    the model still follows the C for a VM_FAULT_HWPOISON result (SIGSEGV / SEGV_MAPERR, L319-327).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from harness.kernel.constants import (BUS_ADRALN, BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY,
                                      FAULT_FLAG_KILLABLE, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                                      PAGE_MASK, PAGE_SIZE, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV,
                                      VM_EXEC, VM_FAULT_ERROR, VM_FAULT_MAJOR, VM_FAULT_OOM,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_GROWSDOWN, VM_READ, VM_WRITE)

from .cpu import (EC_DABT_CUR, EC_DABT_LOW, EC_IABT_LOW, EC_PC_ALIGN, EC_SHIFT, EC_SP_ALIGN,
                  ESR_CM, ESR_WNR, PSR_MODE_EL0t, PSR_MODE_MASK, TASK_SIZE)

if TYPE_CHECKING:
    from harness.kernel import Kernel

    from .cpu import Arm64Fault

SIGILL = 4
ILL_ILLOPC = 1

ESR_LNX_EXEC = 1 << 24          # L154: the software exec bit el0_ia ORs into the ESR
VM_FAULT_BADMAP = 0x010000      # L151
VM_FAULT_BADACCESS = 0x020000   # L152

# fault_info[] (L373-443): DFSC -> (handler, signal, si_code, name)
DO_BAD, DO_TRANSLATION_FAULT, DO_PAGE_FAULT = "do_bad", "do_translation_fault", "do_page_fault"


def _fault_info() -> list[tuple[str, int, int, str]]:
    table = [(DO_BAD, SIGBUS, 0, f"unknown {i}") for i in range(64)]
    for i in range(4):
        table[i] = (DO_BAD, SIGBUS, 0, f"level {i} address size fault")
    for i in (4, 5, 6):
        table[i] = (DO_TRANSLATION_FAULT, SIGSEGV, SEGV_MAPERR, f"level {i - 4} translation fault")
    table[7] = (DO_PAGE_FAULT, SIGSEGV, SEGV_MAPERR, "level 3 translation fault")
    table[8] = (DO_BAD, SIGBUS, 0, "reserved access flag fault")
    for i in (9, 10, 11):
        table[i] = (DO_PAGE_FAULT, SIGSEGV, SEGV_ACCERR, f"level {i - 8} access flag fault")
    table[12] = (DO_BAD, SIGBUS, 0, "reserved permission fault")
    for i in (13, 14, 15):
        table[i] = (DO_PAGE_FAULT, SIGSEGV, SEGV_ACCERR, f"level {i - 12} permission fault")
    table[16] = (DO_BAD, SIGBUS, 0, "synchronous external abort")
    table[17] = (DO_BAD, SIGBUS, 0, "asynchronous external abort")
    for i in (20, 21, 22, 23):
        table[i] = (DO_BAD, SIGBUS, 0, "synchronous abort (translation table walk)")
    table[24] = (DO_BAD, SIGBUS, 0, "synchronous parity error")
    table[25] = (DO_BAD, SIGBUS, 0, "asynchronous parity error")
    for i in (28, 29, 30, 31):
        table[i] = (DO_BAD, SIGBUS, 0, "synchronous parity error (translation table walk")
    table[33] = (DO_BAD, SIGBUS, BUS_ADRALN, "alignment fault")
    table[34] = (DO_BAD, SIGBUS, 0, "debug event")
    table[52] = (DO_BAD, SIGBUS, 0, "implementation fault (lockdown abort)")
    table[58] = (DO_BAD, SIGBUS, 0, "implementation fault (coprocessor abort)")
    return table


FAULT_INFO = _fault_info()

# A do_page_fault implementation: (k, regs, addr, esr) -> 0 (handled) or nonzero (unhandled).
DoPageFault = Callable[["Kernel", "Arm64Fault", int, int], int]


def user_mode(regs: "Arm64Fault") -> bool:
    """ptrace.h: (pstate & PSR_MODE_MASK) == PSR_MODE_EL0t."""
    return (regs.pstate & PSR_MODE_MASK) == PSR_MODE_EL0t


# -- traps.c ----------------------------------------------------------------------------------

def arm64_notify_die(k: "Kernel", regs: "Arm64Fault", signo: int, code: int, addr: int, err: int,
                     why: str) -> None:
    """traps.c L251-261: a user gets the signal (thread.fault_address = 0!); the kernel dies."""
    if user_mode(regs):
        k.task.thread.update(fault_address=0, fault_code=err)
        k.force_sig_info_fault(signo, code, addr)
    else:
        k.die(why)


def bad_mode(k: "Kernel", regs: "Arm64Fault", esr: int) -> None:
    """traps.c L425-441: SIGILL / ILL_ILLOPC at the pc; from EL1 that is die("Oops - bad mode")."""
    k.decide("el1_inv:bad_mode", f"esr {esr:#x}")
    arm64_notify_die(k, regs, SIGILL, ILL_ILLOPC, regs.pc, 0, "Oops - bad mode")


# -- fault.c helpers ----------------------------------------------------------------------------

def __do_kernel_fault(k: "Kernel", addr: int, esr: int, regs: "Arm64Fault") -> None:
    """L85-106: exception-table fixup, else oops and do_exit(SIGKILL)."""
    if k.fixup_exception(regs.pc):
        k.decide("__do_kernel_fault:fixup", route=False)
        return
    k.decide("__do_kernel_fault:oops", route=False)
    k.die("Unable to handle kernel " + ("NULL pointer dereference" if addr < PAGE_SIZE else "paging request"))


def __do_user_fault(k: "Kernel", addr: int, esr: int, sig: int, code: int, regs: "Arm64Fault") -> None:
    """L112-134: record fault_address/fault_code, force the signal with si_addr = addr."""
    k.task.thread.update(fault_address=addr, fault_code=esr)
    k.force_sig_info_fault(sig, code, addr)


def do_bad_area(k: "Kernel", addr: int, esr: int, regs: "Arm64Fault") -> None:
    """L136-149."""
    if user_mode(regs):
        __do_user_fault(k, addr, esr, SIGSEGV, SEGV_MAPERR, regs)
    else:
        __do_kernel_fault(k, addr, esr, regs)


# -- do_page_fault ------------------------------------------------------------------------------

def __do_page_fault(k: "Kernel", addr: int, mm_flags: int, vm_flags: int) -> int:
    """L156-192: BADMAP / BADACCESS, or handle_mm_fault() of the page-aligned address."""
    vma = k.find_vma(addr)
    if vma is None:
        k.decide("VM_FAULT_BADMAP", "no vma")
        return VM_FAULT_BADMAP
    if vma.start > addr:
        # check_stack: no stack-pointer test of any kind on arm64 (L187-191).
        if not (vma.flags & VM_GROWSDOWN):
            k.decide("VM_FAULT_BADMAP", "vma above, not VM_GROWSDOWN")
            return VM_FAULT_BADMAP
        if k.expand_stack(vma, addr):
            k.decide("VM_FAULT_BADMAP", "expand_stack failed")
            return VM_FAULT_BADMAP
        k.decide("check_stack:good_area", "stack expanded", route=False)
    # good_area: the VMA needs ANY of the permissions in the mask (L180).
    if not (vma.flags & vm_flags):
        k.decide("VM_FAULT_BADACCESS")
        return VM_FAULT_BADACCESS
    k.decide("good_area")
    return k.handle_mm_fault(vma, addr & PAGE_MASK, mm_flags)


def do_page_fault(k: "Kernel", regs: "Arm64Fault", addr: int, esr: int) -> int:
    """L194-335. Always returns 0 (the fault is dealt with here)."""
    tsk = k.task
    vm_flags = VM_READ | VM_WRITE | VM_EXEC
    mm_flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE

    if k.in_atomic() or k.mm is None:                      # L214-215
        k.decide("atomic_or_no_mm:no_context")
        __do_kernel_fault(k, addr, esr, regs)
        return 0
    if user_mode(regs):                                      # L217-218
        mm_flags |= FAULT_FLAG_USER
    if esr & ESR_LNX_EXEC:                                   # L220-225
        vm_flags = VM_EXEC
    elif (esr & ESR_WNR) and not (esr & ESR_CM):
        vm_flags = VM_WRITE
        mm_flags |= FAULT_FLAG_WRITE

    if not k.down_read_trylock():                            # L232-236
        if not user_mode(regs) and not k.search_exception_tables(regs.pc):
            k.decide("trylock_failed:no_context")
            __do_kernel_fault(k, addr, esr, regs)
            return 0
        k.down_read()

    while True:  # retry: (the label sits before down_read; the retry path takes the lock below)
        fault = __do_page_fault(k, addr, mm_flags, vm_flags)   # L249

        if (fault & VM_FAULT_RETRY) and k.fatal_signal_pending():  # L256-257, user AND kernel
            k.decide("retry:fatal_signal_return")
            return 0

        k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS")         # L265: once per pass, every result
        if mm_flags & FAULT_FLAG_ALLOW_RETRY:                # L266-284: first pass only
            if fault & VM_FAULT_MAJOR:
                tsk.maj_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MAJ")
                k.decide("account_major", route=False)
            else:
                tsk.min_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MIN")
                k.decide("account_minor", route=False)
            if fault & VM_FAULT_RETRY:
                mm_flags &= ~FAULT_FLAG_ALLOW_RETRY           # no FAULT_FLAG_TRIED on arm64
                k.decide("retry")
                k.down_read()
                continue
        break

    k.up_read()                                              # L286

    if not (fault & (VM_FAULT_ERROR | VM_FAULT_BADMAP | VM_FAULT_BADACCESS)):  # L291-293
        return 0
    if not user_mode(regs):                                  # L299-300
        k.decide("kernel:no_context")
        __do_kernel_fault(k, addr, esr, regs)
        return 0
    if fault & VM_FAULT_OOM:                                 # L302-310
        k.decide("VM_FAULT_OOM:pagefault_out_of_memory")
        k.pagefault_out_of_memory()
        return 0
    if fault & VM_FAULT_SIGBUS:                              # L312-318
        k.decide("VM_FAULT_SIGBUS:sigbus")
        sig, code = SIGBUS, BUS_ADRERR
    else:                                                    # L319-327: equality, not a bit test
        sig, code = SIGSEGV, (SEGV_ACCERR if fault == VM_FAULT_BADACCESS else SEGV_MAPERR)
        k.decide("sigsegv", "SEGV_ACCERR" if code == SEGV_ACCERR else "SEGV_MAPERR")
    __do_user_fault(k, addr, esr, sig, code, regs)           # L329
    return 0


# -- dispatch -----------------------------------------------------------------------------------

def do_translation_fault(k: "Kernel", regs: "Arm64Fault", addr: int, esr: int, dpf: DoPageFault) -> int:
    """L354-363: user addresses go to do_page_fault, the rest straight to do_bad_area."""
    if addr < TASK_SIZE:
        return dpf(k, regs, addr, esr)
    k.decide("do_translation_fault:do_bad_area")
    do_bad_area(k, addr, esr, regs)
    return 0


def do_mem_abort(k: "Kernel", regs: "Arm64Fault", addr: int, esr: int, dpf: DoPageFault) -> None:
    """L454-471: fault_info[esr & 63]; an unhandled fault goes to arm64_notify_die (no fixup)."""
    fn, sig, code, name = FAULT_INFO[esr & 63]
    if fn == DO_PAGE_FAULT:
        rc = dpf(k, regs, addr, esr)
    elif fn == DO_TRANSLATION_FAULT:
        rc = do_translation_fault(k, regs, addr, esr, dpf)
    else:
        rc = 1  # do_bad (L368-371)
    if not rc:
        return
    k.decide("do_mem_abort:unhandled", name)
    arm64_notify_die(k, regs, sig, code, addr, esr, "")


def do_sp_pc_abort(k: "Kernel", regs: "Arm64Fault", addr: int, esr: int) -> None:
    """L476-487: SIGBUS / BUS_ADRALN (user) or die (kernel)."""
    k.decide("do_sp_pc_abort")
    arm64_notify_die(k, regs, SIGBUS, BUS_ADRALN, addr, esr, "")


def el_sync(k: "Kernel", regs: "Arm64Fault", dpf: DoPageFault) -> None:
    """entry.S el0_sync (L375-399) / el1_sync (L269-285): route the exception by ESR.EC."""
    esr, ec = regs.esr, regs.esr >> EC_SHIFT
    if user_mode(regs):
        if ec == EC_DABT_LOW:
            # el0_da (L447-459): strip the address tag, pass the ESR unchanged.
            k.decide("el0_da", route=False)
            do_mem_abort(k, regs, regs.far & ~(0xFF << 56), esr, dpf)
        elif ec == EC_IABT_LOW:
            # el0_ia (L460-472): no tag strip; "use reserved ISS bit for instruction aborts".
            k.decide("el0_ia", route=False)
            do_mem_abort(k, regs, regs.far, esr | ESR_LNX_EXEC, dpf)
        elif ec in (EC_SP_ALIGN, EC_PC_ALIGN):
            k.decide("el0_sp_pc", route=False)
            do_sp_pc_abort(k, regs, regs.far, esr)
        else:
            raise AssertionError(f"arm64: EL0 exception class {ec:#x} is not a memory abort")
    else:
        if ec == EC_DABT_CUR:
            # el1_da (L286-301)
            k.decide("el1_da", route=False)
            do_mem_abort(k, regs, regs.far, esr, dpf)
        elif ec in (EC_SP_ALIGN, EC_PC_ALIGN):
            k.decide("el1_sp_pc", route=False)
            do_sp_pc_abort(k, regs, regs.far, esr)
        else:
            # An EL1 instruction abort (EC 0x21) is not handled in v4.0: el1_inv -> bad_mode.
            bad_mode(k, regs, esr)


def handle(k: "Kernel", regs: "Arm64Fault") -> None:
    """The legacy v4.0 path from the exception vector."""
    el_sync(k, regs, do_page_fault)
