"""Model of the Linux 4.0 powerpc page-fault handler, arch/powerpc/mm/fault.c (blob b396868), for
Book3S-64 (ppc64, hash MMU, POWER server CPUs) and Book3S-32 (ppc32, CONFIG_6xx), big-endian.

Functions keep the C's names and decision order; line numbers are v4.0's. What the assembly does
before do_page_fault() is in `entry_error_code()`: exceptions-64s.S passes DSISR for a DSI and
SRR1 & 0x58200000 for an ISI (L1026); head_32.S passes DSISR or the full SRR1. The faults the CPU
model raises are those hash_page() cannot satisfy (the Linux PTE does not permit the access), so
hash_page() returning 1 (-> do_page_fault) is the only route modelled.

`PpcParams` carries the ppc64/ppc32 differences: TASK_SIZE, CPU_FTR_NOEXECUTE (POWER4 and later
have it, 6xx/7xx do not), CONFIG_6xx's odd-DSISR check and the DABR check (not Book3S-64).

Not modelled, and why:
  * BookE / 40x / 44x / 8xx (ESR instead of DSISR, ICSWX, the 8xx guarded check at L381): other
    CPU families with their own entry code; the two arches here are Book3S. Their differences are
    recorded in the notes of arches/powerpc/__init__.py.
  * notify_page_fault (kprobes) and debugger_fault_handler (xmon): debugging hooks, off.
  * do_break (DABR match, L264): no catalogue instruction sets a data breakpoint; the CPU never
    reports DSISR_DABRMATCH. The branch is modelled and unreachable from the CPU.
  * low_hash_fault (hash_page() < 0, HV refused the HPTE insert) and SLB/segment interrupts: the
    simulated HV never refuses, and the catalogue addresses stay within mapped segments.
  * store_updates_sp()'s get_user() taking a nested fault: the model reads the instruction bytes
    the CPU executed (NativeFault.insn); for an ISI there are none and store_updates_sp() is 0.
  * The printk/WARN_ON_ONCE paths (NX "exploit attempt?", PROTFAULT warnings) have no effect
    on the outcome; they are recorded as non-routing decisions.
  * bad_page_fault's die() exit code (the returned signal) is recorded in the oops reason only;
    the Outcome comparison does not look at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.kernel.constants import (BUS_ADRERR, BUS_MCEERR_AR, FAULT_FLAG_ALLOW_RETRY,
                                      FAULT_FLAG_KILLABLE, FAULT_FLAG_TRIED, FAULT_FLAG_USER,
                                      FAULT_FLAG_WRITE, PAGE_SHIFT, SEGV_ACCERR, SEGV_MAPERR,
                                      SIGBUS, SIGKILL, SIGSEGV, VM_EXEC, VM_FAULT_ERROR,
                                      VM_FAULT_GET_HINDEX, VM_FAULT_HWPOISON,
                                      VM_FAULT_HWPOISON_LARGE, VM_FAULT_MAJOR, VM_FAULT_OOM,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
                                      VM_GROWSDOWN, VM_READ, VM_WRITE, SIGNALS)

from .cpu import DSISR_DABRMATCH, DSISR_ISSTORE, DSISR_PROTFAULT, TRAP_ISI

if TYPE_CHECKING:
    from harness.kernel import Kernel, Vma

    from .cpu import PpcFault

MM_FAULT_RETURN = 0
MM_FAULT_CONTINUE = -1
HSTATE_SHIFTS = (24, 34)  # ppc64 hash: 16M and 16G huge pages (hstate_index_to_shift)
PAGE_FACTOR = PAGE_SHIFT - 12
ISI_ASM_MASK64 = 0x58200000  # exceptions-64s.S L1026: andis. r4,r12,0x5820
ISI_C_MASK = 0x48200000      # fault.c L230
ODD_6XX_MASK = 0x95700000    # fault.c L376
CMO_COUNTER = "lppaca.page_ins"  # the CMO hypervisor counter (recorded beside the perf events)


@dataclass(frozen=True)
class PpcParams:
    name: str
    bits: int
    task_size: int
    noexecute: bool      # cpu_has_feature(CPU_FTR_NOEXECUTE)
    config_6xx: bool     # CONFIG_6xx (Book3S-32): the odd-DSISR check and DABR in C


def entry_error_code(p: PpcParams, regs: "PpcFault") -> int:
    """What the exception entry passes as error_code (module docstring)."""
    if regs.trap == TRAP_ISI:
        return regs.srr1 & ISI_ASM_MASK64 if p.bits == 64 else regs.srr1 & 0xFFFFFFFF
    return regs.dsisr


def fault_address(regs: "PpcFault") -> int:
    """DAR for a DSI, SRR0 (= regs->nip) for an ISI."""
    return regs.nip if regs.trap == TRAP_ISI else regs.dar


def store_updates_sp(regs: "PpcFault") -> bool:
    """L75-107: is the instruction at nip a store with update whose rA is r1?"""
    if len(regs.insn) < 4:  # get_user() failed
        return False
    inst = int.from_bytes(regs.insn[:4], "big")
    if (inst >> 16) & 0x1F != 1:
        return False
    op = inst >> 26
    if op in (37, 39, 45, 53, 55):  # stwu stbu sthu stfsu stfdu
        return True
    if op == 62:  # std / stdu
        return inst & 3 == 1
    if op == 31:
        return (inst >> 1) & 0x3FF in (181, 183, 247, 439, 695, 759)
    return False


def do_sigbus(k: "Kernel", regs: "PpcFault", address: int, fault: int) -> int:
    """L116-147: up_read; kernel -> SIGBUS; user -> SIGBUS BUS_ADRERR / BUS_MCEERR_AR with lsb."""
    k.up_read()
    return do_sigbus_nosemaphore(k, regs, address, fault)


def do_sigbus_nosemaphore(k: "Kernel", regs: "PpcFault", address: int, fault: int) -> int:
    """L124-146, the part of do_sigbus() after up_read() (what a conversion calls)."""
    if not regs.user:
        k.decide("do_sigbus:kernel", "return SIGBUS", route=False)
        return SIGBUS
    k.task.thread["trap_nr"] = BUS_ADRERR
    code = BUS_ADRERR
    lsb = 0
    if fault & (VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE):  # CONFIG_MEMORY_FAILURE
        code = BUS_MCEERR_AR
    if fault & VM_FAULT_HWPOISON_LARGE:
        index = VM_FAULT_GET_HINDEX(fault)
        lsb = HSTATE_SHIFTS[index] if index < len(HSTATE_SHIFTS) else 0
    if fault & VM_FAULT_HWPOISON:
        lsb = PAGE_SHIFT
    k.decide("do_sigbus:user", route=False)
    k.force_sig_info_fault(SIGBUS, code, address, lsb)
    return MM_FAULT_RETURN


def mm_fault_error(k: "Kernel", regs: "PpcFault", addr: int, fault: int) -> int:
    """L149-193."""
    if k.fatal_signal_pending():
        if not fault & VM_FAULT_RETRY:
            k.up_read()
        if regs.user:
            k.decide("mm_fault_error:fatal_signal_user", "return 0")
            return MM_FAULT_RETURN
        k.decide("mm_fault_error:fatal_signal_kernel", "return SIGKILL")
        return SIGKILL
    if not fault & VM_FAULT_ERROR:
        k.decide("mm_fault_error:continue", route=False)
        return MM_FAULT_CONTINUE
    if fault & VM_FAULT_OOM:
        k.up_read()
        if not regs.user:
            k.decide("mm_fault_error:oom_kernel", "return SIGKILL")
            return SIGKILL
        k.decide("mm_fault_error:oom_user", "pagefault_out_of_memory")
        k.pagefault_out_of_memory()
        return MM_FAULT_RETURN
    if fault & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE):
        k.decide("mm_fault_error:sigbus")
        return do_sigbus(k, regs, addr, fault)
    k.decide("mm_fault_error:BUG")
    k.BUG("mm_fault_error: unhandled VM_FAULT_ERROR bits")
    return MM_FAULT_CONTINUE


def exec_access_error(p: PpcParams, vma: "Vma") -> bool:
    """L402-405: exec needs VM_EXEC on NOEXECUTE CPUs, else any of R/W/X."""
    return not vma.flags & VM_EXEC and (p.noexecute or not vma.flags & (VM_READ | VM_WRITE))


def access_error(k: "Kernel", p: PpcParams, error_code: int, is_exec: bool, is_write: bool,
                 vma: "Vma") -> bool:
    """The checks between good_area and handle_mm_fault (L375-424), as one predicate."""
    if p.config_6xx and error_code & ODD_6XX_MASK:
        k.decide("access_error:6xx_odd_dsisr", route=False)
        return True
    if is_exec:
        if exec_access_error(p, vma):
            k.decide("access_error:exec", route=False)
            return True
        if error_code & DSISR_PROTFAULT:
            k.decide("WARN_ON_ONCE(exec PROTFAULT)", route=False)
        return False
    if is_write:
        if not vma.flags & VM_WRITE:
            k.decide("access_error:write", route=False)
            return True
        return False
    if not vma.flags & (VM_READ | VM_EXEC | VM_WRITE):
        k.decide("access_error:read", route=False)
        return True
    if error_code & DSISR_PROTFAULT:
        k.decide("WARN_ON_ONCE(read PROTFAULT)", route=False)
    return False


def stack_rule_refuses(k: "Kernel", regs: "PpcFault", address: int, vma: "Vma", store_update_sp: bool) -> bool:
    """L349-369: more than 1 MiB below vm_end, an access more than 2048 bytes below the user r1
    is refused unless the instruction is a store with update of r1. Applies in both modes."""
    if address + 0x100000 < vma.end:
        # current->thread.regs is NULL only for kernel threads, which have no mm and never get here.
        if address + 2048 < regs.gpr1 and not store_update_sp:
            return True
    return False


def bad_area_nosemaphore(k: "Kernel", regs: "PpcFault", address: int, code: int, is_exec: bool,
                         error_code: int) -> int:
    """L483-495: user -> _exception(SIGSEGV, code); kernel -> return SIGSEGV."""
    if regs.user:
        k.decide("bad_area_nosemaphore:user_sigsegv", route=False)
        k.task.thread["trap_nr"] = code
        k.force_sig_info_fault(SIGSEGV, code, address, 0)
        return 0
    if is_exec and error_code & DSISR_PROTFAULT:
        k.decide("kernel NX exploit-attempt printk", route=False)
    k.decide("bad_area_nosemaphore:kernel", "return SIGSEGV", route=False)
    return SIGSEGV


def do_page_fault(k: "Kernel", p: PpcParams, regs: "PpcFault", address: int, error_code: int,
                  *, cmo: bool = False) -> int:
    """L208-501. Returns 0 or the signal bad_page_fault() gets."""
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    code = SEGV_MAPERR
    is_write = False
    is_exec = regs.trap == TRAP_ISI
    store_update_sp = False

    if is_exec:  # L229-232
        error_code &= ISI_C_MASK
    else:
        is_write = bool(error_code & DSISR_ISSTORE)

    if not regs.user and address >= p.task_size:  # L257
        k.decide("kernel_address:SIGSEGV")
        return SIGSEGV

    if p.config_6xx and error_code & DSISR_DABRMATCH:  # L262-269 (not Book3S-64)
        k.decide("do_break")
        return 0

    if k.in_atomic() or k.mm is None:  # L275
        if not regs.user:
            k.decide("atomic_or_no_mm:SIGSEGV")
            return SIGSEGV
        k.decide("atomic_or_no_mm:user_die")
        k.die("Weird page fault")

    k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS")

    if regs.user:  # L296-300
        store_update_sp = store_updates_sp(regs)
        flags |= FAULT_FLAG_USER

    if not k.down_read_trylock():  # L317
        if not regs.user and not k.search_exception_tables(regs.nip):
            k.decide("trylock_failed:bad_area_nosemaphore")
            return bad_area_nosemaphore(k, regs, address, code, is_exec, error_code)
        k.down_read()

    while True:  # the retry: label sits at the down_read() above
        vma = k.find_vma(address)
        if vma is None:
            k.decide("bad_area", "no vma")
            return bad_area(k, regs, address, code, is_exec, error_code)
        if vma.start > address:
            if not vma.flags & VM_GROWSDOWN:
                k.decide("bad_area", "vma above, not VM_GROWSDOWN")
                return bad_area(k, regs, address, code, is_exec, error_code)
            if stack_rule_refuses(k, regs, address, vma, store_update_sp):
                k.decide("bad_area", "more than 2048 bytes below r1")
                return bad_area(k, regs, address, code, is_exec, error_code)
            if k.expand_stack(vma, address):
                k.decide("bad_area", "expand_stack failed")
                return bad_area(k, regs, address, code, is_exec, error_code)
        k.decide("good_area")
        code = SEGV_ACCERR  # L374: every bad_area from here on is ACCERR

        if access_error(k, p, error_code, is_exec, is_write, vma):
            k.decide("bad_area", "access_error")
            return bad_area(k, regs, address, code, is_exec, error_code)
        if is_write:
            flags |= FAULT_FLAG_WRITE

        fault = k.handle_mm_fault(vma, address, flags)
        if fault & (VM_FAULT_RETRY | VM_FAULT_ERROR):
            if fault & VM_FAULT_SIGSEGV:
                k.decide("VM_FAULT_SIGSEGV:bad_area")
                return bad_area(k, regs, address, code, is_exec, error_code)
            rc = mm_fault_error(k, regs, address, fault)
            if rc >= MM_FAULT_RETURN:
                return rc

        if flags & FAULT_FLAG_ALLOW_RETRY:  # L447: accounting on the first attempt only
            if fault & VM_FAULT_MAJOR:
                k.task.maj_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MAJ")
                if cmo:  # CONFIG_PPC_SMLPAR && firmware_has_feature(FW_FEATURE_CMO)
                    for _ in range(1 << PAGE_FACTOR):
                        k.perf_sw_event(CMO_COUNTER)
                k.decide("account_major")
            else:
                k.task.min_flt += 1
                k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MIN")
                k.decide("account_minor")
            if fault & VM_FAULT_RETRY:
                flags &= ~FAULT_FLAG_ALLOW_RETRY
                flags |= FAULT_FLAG_TRIED
                k.decide("retry")
                k.down_read()
                continue
        break

    k.up_read()
    return 0


def bad_area(k: "Kernel", regs: "PpcFault", address: int, code: int, is_exec: bool, error_code: int) -> int:
    """L480: up_read, then bad_area_nosemaphore."""
    k.up_read()
    return bad_area_nosemaphore(k, regs, address, code, is_exec, error_code)


def bad_page_fault(k: "Kernel", regs: "PpcFault", address: int, sig: int) -> None:
    """L508-543: exception-table fixup, else die("Kernel access of bad area", sig)."""
    if k.fixup_exception(regs.nip):
        k.decide("bad_page_fault:fixup", route=False)
        return
    k.decide("bad_page_fault:die", SIGNALS.get(sig, str(sig)), route=False)
    k.die(f"Kernel access of bad area ({SIGNALS.get(sig, sig)})")


def handle_page_fault(k: "Kernel", p: PpcParams, regs: "PpcFault") -> None:
    """The assembly's handle_page_fault: do_page_fault(), then bad_page_fault() if it returned a signal."""
    address = fault_address(regs)
    rc = do_page_fault(k, p, regs, address, entry_error_code(p, regs), cmo=k.features.get("cmo", False))
    if rc:
        bad_page_fault(k, regs, address, rc)
