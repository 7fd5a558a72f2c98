"""Model of the Linux 4.0 32-bit ARM abort path: arch/arm/mm/fault.c (blob 6333d9c), fault.h,
fsr-2level.c (classic MMU, LPAE off), the ARMv7 abort models abort-ev7.S / pabort-v7.S and, with
the cpu feature `abort_ev4`, the ARMv4 early-abort model abort-ev4.S (+ the Thumb decoder
do_thumb_abort of abort-macro.S as abort-ev4t.S uses it) with pabort-legacy.S.

Functions keep the C's names and decision order; line numbers are v4.0 fault.c unless noted.

Not modelled, and why:
  * kprobes (notify_page_fault, L33-53, L265): off in the kernels the conversion must preserve.
  * CONFIG_DEBUG_VM's second extable test after a successful trylock (L304-308): a debug option.
  * CONFIG_VERIFY_PERMISSION_FAULT in abort-ev7.S (re-translating a permission fault with ATS1CPR):
    a Qualcomm-specific erratum workaround; with an accurate MMU it never rewrites the FSR.
  * do_alignment (alignment.c, hooked on FS 1/3 for <= v6): the catalogue aligns the address
    register, so no alignment fault is raised; hw_breakpoint's FS 2 hook likewise.
  * do_translation_fault's vmalloc sync (L436-477) is modelled with the simulated init_mm having
    no vmalloc mappings: pgd_none(*pgd_k) holds for every address outside the one kernel section
    the CPU maps (cpu.py), and faults inside that section are never translation faults.
  * show_pte / printk / CONFIG_DEBUG_USER: messages only.
  * arm_notify_die's die() for kernel do_bad faults is modelled as an oops; its user side forces
    the table signal (traps.c L336-347).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from harness.kernel.constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_KILLABLE, FAULT_FLAG_TRIED,
                                      FAULT_FLAG_USER, FAULT_FLAG_WRITE, PAGE_MASK, PAGE_SIZE,
                                      SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGKILL, SIGSEGV, VM_EXEC,
                                      VM_FAULT_ERROR, VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_RETRY,
                                      VM_FAULT_SIGBUS, VM_GROWSDOWN, VM_READ, VM_WRITE, BUS_ADRALN,
                                      BUS_ADRERR, BUS_OBJERR)

from .cpu import TASK_SIZE

if TYPE_CHECKING:
    from harness.kernel import Kernel, Vma

    from .cpu import ArmFault

# fault.h v4.0 L7-11
FSR_LNX_PF = 1 << 31
FSR_WRITE = 1 << 11
FSR_FS4 = 1 << 10
FSR_FS3_0 = 15

# fault.c v4.0 L202-203: arm-private results, outside VM_FAULT_ERROR
VM_FAULT_BADMAP = 0x010000
VM_FAULT_BADACCESS = 0x020000

FIRST_USER_ADDRESS = 2 * PAGE_SIZE  # asm/pgtable.h v4.0 L64
PSR_T_BIT = 1 << 5


def fsr_fs(fsr: int) -> int:
    """fault.h L19-22 (non-LPAE): FS[3:0] | FS[4] moved down to bit 4."""
    return (fsr & FSR_FS3_0) | ((fsr & FSR_FS4) >> 6)


def user_mode(regs: "ArmFault") -> bool:
    """ptrace.h: (ARM_cpsr & 0xf) == 0, i.e. USR mode."""
    return (regs.cpsr & 0xF) == 0


# -- the abort models (entry code before do_DataAbort / do_PrefetchAbort) ---------------------

def cpu_abort_model(k: "Kernel", regs: "ArmFault") -> tuple[int, int]:
    """CPU_DABORT_HANDLER / CPU_PABORT_HANDLER: (addr, fsr) handed to do_DataAbort/do_PrefetchAbort.

    ARMv7 (default): v7_early_abort reads DFSR/DFAR unchanged; v7_pabort reads IFAR and IFSR.
    `abort_ev4`: v4_early_abort (abort-ev4.S) clears FSR bits 11 and 10 and sets bit 11 iff the
    L bit (20) of the 32-bit word at the aborted pc is clear; in Thumb state the v4t model's
    do_thumb_abort (abort-macro.S) reads the halfword at pc: (insn & 0xfe00) == 0x5600 (LDRSB
    register) counts as L=1, otherwise bit 11 is the L bit. legacy_pabort (pabort-legacy.S) hands
    addr = the aborted pc and forces IFSR = 5 (section translation fault).
    """
    if not k.features.get("abort_ev4", False):
        return regs.far, regs.fsr
    if regs.prefetch:
        return regs.pc, 5
    fsr = regs.fsr & ~(FSR_WRITE | FSR_FS4)
    if regs.cpsr & PSR_T_BIT:
        half = int.from_bytes(regs.insn[:2], "little")
        tmp = half & 0xFE00
        if tmp == 0x5600:
            tmp |= 1 << 11
        if not tmp & (1 << 11):
            fsr |= FSR_WRITE
    else:
        word = int.from_bytes(regs.insn[:4].ljust(4, b"\0"), "little")
        if not word & (1 << 20):
            fsr |= FSR_WRITE
    return regs.far, fsr


# -- fault.c ------------------------------------------------------------------------------------

def __do_kernel_fault(k: "Kernel", addr: int, fsr: int, regs: "ArmFault") -> None:
    """L131-153: exception-table fixup, else "Unable to handle kernel ..." oops and do_exit."""
    if k.fixup_exception(regs.pc):
        k.decide("__do_kernel_fault:fixup", route=False)
        return
    k.decide("__do_kernel_fault:oops", route=False)
    k.die("Oops")


def __do_user_fault(k: "Kernel", addr: int, fsr: int, sig: int, code: int, regs: "ArmFault") -> None:
    """L159-184: thread.address/error_code/trap_no = 14, force the signal (no si_addr_lsb)."""
    k.task.thread.update(address=addr, error_code=fsr, trap_no=14)
    k.decide("__do_user_fault", f"sig {sig} code {code}", route=False)
    k.force_sig_info_fault(sig, code, addr, 0)


def do_bad_area(k: "Kernel", addr: int, fsr: int, regs: "ArmFault") -> None:
    """L186-199: user SIGSEGV/SEGV_MAPERR, kernel __do_kernel_fault."""
    if user_mode(regs):
        __do_user_fault(k, addr, fsr, SIGSEGV, SEGV_MAPERR, regs)
    else:
        __do_kernel_fault(k, addr, fsr, regs)


def access_error(fsr: int, vma: "Vma") -> bool:
    """L210-220: mask R|W|X; a write needs VM_WRITE; a prefetch abort needs VM_EXEC (tested last)."""
    mask = VM_READ | VM_WRITE | VM_EXEC
    if fsr & FSR_WRITE:
        mask = VM_WRITE
    if fsr & FSR_LNX_PF:
        mask = VM_EXEC
    return not vma.flags & mask


def __do_page_fault(k: "Kernel", addr: int, fsr: int, flags: int) -> int:
    """L222-255: BADMAP / BADACCESS or handle_mm_fault(addr & PAGE_MASK)."""
    vma = k.find_vma(addr)
    fault = VM_FAULT_BADMAP
    if vma is None:
        k.decide("__do_page_fault:badmap", "no vma", route=False)
        return fault
    if vma.start > addr:
        # check_stack (L248-252): GROWSDOWN, not below FIRST_USER_ADDRESS, expand_stack() == 0.
        if not vma.flags & VM_GROWSDOWN:
            k.decide("__do_page_fault:badmap", "vma above, not VM_GROWSDOWN", route=False)
            return fault
        if addr < FIRST_USER_ADDRESS:
            k.decide("__do_page_fault:badmap", "below FIRST_USER_ADDRESS", route=False)
            return fault
        if k.expand_stack(vma, addr):
            k.decide("__do_page_fault:badmap", "expand_stack failed", route=False)
            return fault
    k.decide("good_area", route=False)
    if access_error(fsr, vma):
        k.decide("__do_page_fault:badaccess", route=False)
        return VM_FAULT_BADACCESS
    return k.handle_mm_fault(vma, addr & PAGE_MASK, flags)


def do_page_fault(k: "Kernel", addr: int, fsr: int, regs: "ArmFault") -> int:
    """L257-394."""
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    tsk = k.task
    mm = k.mm
    if k.in_atomic() or mm is None:
        k.decide("no_context", "in_atomic or no mm")
        __do_kernel_fault(k, addr, fsr, regs)
        return 0
    if user_mode(regs):
        flags |= FAULT_FLAG_USER
    if fsr & FSR_WRITE:
        flags |= FAULT_FLAG_WRITE

    if not k.down_read_trylock():
        if not user_mode(regs) and not k.search_exception_tables(regs.pc):
            k.decide("no_context", "trylock failed, no exception entry")
            __do_kernel_fault(k, addr, fsr, regs)
            return 0
        k.down_read()
    while True:
        fault = __do_page_fault(k, addr, fsr, flags)
        if fault & VM_FAULT_RETRY and k.fatal_signal_pending():
            k.decide("retry_fatal_signal", "return 0")
            return 0
        k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS")
        if not fault & VM_FAULT_ERROR and flags & FAULT_FLAG_ALLOW_RETRY:
            if fault & VM_FAULT_MAJOR:
                tsk.maj_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MAJ")
            else:
                tsk.min_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MIN")
            if fault & VM_FAULT_RETRY:
                flags &= ~FAULT_FLAG_ALLOW_RETRY
                flags |= FAULT_FLAG_TRIED
                k.decide("retry", route=False)
                k.down_read()
                continue
        break
    k.up_read()

    if not fault & (VM_FAULT_ERROR | VM_FAULT_BADMAP | VM_FAULT_BADACCESS):
        k.decide("handled")
        return 0
    if not user_mode(regs):
        k.decide("no_context")
        __do_kernel_fault(k, addr, fsr, regs)
        return 0
    if fault & VM_FAULT_OOM:
        k.decide("pagefault_out_of_memory")
        k.pagefault_out_of_memory()
        return 0
    if fault & VM_FAULT_SIGBUS:
        k.decide("sigbus")
        sig, code = SIGBUS, BUS_ADRERR
    else:
        sig = SIGSEGV
        code = SEGV_ACCERR if fault == VM_FAULT_BADACCESS else SEGV_MAPERR
        k.decide("bad_access" if code == SEGV_ACCERR else "bad_area")
    __do_user_fault(k, addr, fsr, sig, code, regs)
    return 0


def do_translation_fault(k: "Kernel", addr: int, fsr: int, regs: "ArmFault",
                         page_fault: Callable[["Kernel", int, int, "ArmFault"], int] = do_page_fault) -> int:
    """L421-482: user addresses go to do_page_fault; above TASK_SIZE the vmalloc sync, which finds
    nothing in the simulated init_mm (module docstring) -> bad_area."""
    if addr < TASK_SIZE:
        return page_fault(k, addr, fsr, regs)
    if user_mode(regs):
        k.decide("do_translation_fault:bad_area", "user, addr >= TASK_SIZE")
        do_bad_area(k, addr, fsr, regs)
        return 0
    k.decide("do_translation_fault:bad_area", "pgd_none(*pgd_k)")
    do_bad_area(k, addr, fsr, regs)
    return 0


def do_sect_fault(k: "Kernel", addr: int, fsr: int, regs: "ArmFault") -> int:
    """L497-503: always do_bad_area (SEGV_MAPERR for a user, despite the table's ACCERR)."""
    k.decide("do_sect_fault")
    do_bad_area(k, addr, fsr, regs)
    return 0


def do_bad(k: "Kernel", addr: int, fsr: int, regs: "ArmFault") -> int:
    """L508-512."""
    return 1


# fsr-2level.c with exceptions_init()'s ARMv7 re-hooks (L596-616): (fn name, sig, code, name)
_BUS0 = ("do_bad", SIGBUS, 0)
FSR_INFO: list[tuple[str, int, int, str]] = [
    ("do_bad", SIGSEGV, 0, "vector exception"),
    ("do_bad", SIGBUS, BUS_ADRALN, "alignment exception"),
    ("do_bad", SIGKILL, 0, "terminal exception"),
    ("do_bad", SIGSEGV, SEGV_MAPERR, "section access flag fault"),          # v7 re-hook L609
    ("do_translation_fault", SIGSEGV, SEGV_MAPERR, "I-cache maintenance fault"),  # v6+ re-hook L600
    ("do_translation_fault", SIGSEGV, SEGV_MAPERR, "section translation fault"),
    ("do_bad", SIGSEGV, SEGV_MAPERR, "section access flag fault"),          # v7 re-hook L611
    ("do_page_fault", SIGSEGV, SEGV_MAPERR, "page translation fault"),
    (*_BUS0, "external abort on non-linefetch"),
    ("do_bad", SIGSEGV, SEGV_ACCERR, "section domain fault"),
    (*_BUS0, "external abort on non-linefetch"),
    ("do_bad", SIGSEGV, SEGV_ACCERR, "page domain fault"),
    (*_BUS0, "external abort on translation"),
    ("do_sect_fault", SIGSEGV, SEGV_ACCERR, "section permission fault"),
    (*_BUS0, "external abort on translation"),
    ("do_page_fault", SIGSEGV, SEGV_ACCERR, "page permission fault"),
] + [(*_BUS0, f"unknown {i}") for i in range(16, 32)]
FSR_INFO[20] = (*_BUS0, "lock abort")
FSR_INFO[22] = ("do_bad", SIGBUS, BUS_OBJERR, "imprecise external abort")
FSR_INFO[24] = (*_BUS0, "dcache parity error")

IFSR_INFO: list[tuple[str, int, int, str]] = [(*_BUS0, f"unknown {i}") for i in range(32)]
IFSR_INFO[2] = (*_BUS0, "debug event")
IFSR_INFO[3] = ("do_bad", SIGSEGV, SEGV_ACCERR, "section access flag fault")
IFSR_INFO[5] = ("do_translation_fault", SIGSEGV, SEGV_MAPERR, "section translation fault")
IFSR_INFO[6] = ("do_bad", SIGSEGV, SEGV_ACCERR, "page access flag fault")
IFSR_INFO[7] = ("do_page_fault", SIGSEGV, SEGV_MAPERR, "page translation fault")
IFSR_INFO[8] = (*_BUS0, "external abort on non-linefetch")
IFSR_INFO[9] = ("do_bad", SIGSEGV, SEGV_ACCERR, "section domain fault")
IFSR_INFO[11] = ("do_bad", SIGSEGV, SEGV_ACCERR, "page domain fault")
IFSR_INFO[12] = (*_BUS0, "external abort on translation")
IFSR_INFO[13] = ("do_sect_fault", SIGSEGV, SEGV_ACCERR, "section permission fault")
IFSR_INFO[14] = (*_BUS0, "external abort on translation")
IFSR_INFO[15] = ("do_page_fault", SIGSEGV, SEGV_ACCERR, "page permission fault")

PageFaultFn = Callable[["Kernel", int, int, "ArmFault"], int]


def dispatch(k: "Kernel", regs: "ArmFault", page_fault: PageFaultFn) -> None:
    """do_DataAbort (L544-562) / do_PrefetchAbort (L577-594), after the abort model.

    `page_fault` is do_page_fault for legacy and the converted handler for the generic side:
    everything else in the table is arch code the conversion keeps.
    """
    addr, fsr = cpu_abort_model(k, regs)
    if regs.prefetch:
        table, fsr = IFSR_INFO, fsr | FSR_LNX_PF
        what = "do_PrefetchAbort"
    else:
        table, fsr = FSR_INFO, fsr & ~FSR_LNX_PF
        what = "do_DataAbort"
    fn, sig, code, name = table[fsr_fs(fsr)]
    k.decide(what, f"{name} -> {fn}", route=False)
    fsr &= 0xFFFFFFFF
    if fn == "do_page_fault":
        ret = page_fault(k, addr, fsr, regs)
    elif fn == "do_translation_fault":
        ret = do_translation_fault(k, addr, fsr, regs, page_fault)
    elif fn == "do_sect_fault":
        ret = do_sect_fault(k, addr, fsr, regs)
    else:
        ret = do_bad(k, addr, fsr, regs)
    if not ret:
        return
    # arm_notify_die (kernel/traps.c L336-347): user gets the table's signal, kernel dies.
    k.decide("unhandled_fault", name)
    if user_mode(regs):
        k.task.thread.update(error_code=fsr, trap_no=0)
        k.force_sig_info_fault(sig, code, addr, 0)
    else:
        k.die(f"Unhandled fault: {name}")


def handle_abort(k: "Kernel", regs: "ArmFault") -> None:
    """The legacy handler the harness calls for each abort."""
    dispatch(k, regs, do_page_fault)
