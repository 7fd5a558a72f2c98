"""Model of the Linux 4.0 x86 page-fault handler, arch/x86/mm/fault.c (blob ede025f, the RFC's pre-image).

Functions keep the C's names and decision order; line numbers are v4.0's. `X86Params` carries the
x86_64/i386 differences (TASK_SIZE_MAX, the sp cushion, the 64-bit-only quirks).

Not modelled, and why:
  * kmmio / kprobes / kmemcheck claims (L1074, L1104, L1116): debugging facilities that are off
    in the kernels whose behaviour the conversion must preserve; they return before any logic
    the RFC touches.
  * vmalloc_fault's page-table sync (L264/L362): the simulated init_mm has no vmalloc mappings,
    so vmalloc_fault() always returns -1 (not a vmalloc fault); that is a faithful answer for it.
  * errata93 (AMD K8 only) and errata100 (compat code segments, which the catalogue never uses).
  * vm86 execution: Unicorn does not run vm86 code, so EFLAGS.VM is never set in a fault the CPU
    raises; check_v8086_mode() and user_mode_vm()'s VM test are modelled and stay inert.
  * is_f00f_bug: modelled (cpu feature "f00f" = X86_BUG_F00F on i386). On real Pentiums the trap
    is an implicit supervisor write from user mode, which Unicorn cannot raise; a kernel-mode
    catalogue access to IDT entry 6 reaches the same code. The address of the read-only IDT alias
    (fix_to_virt(FIX_F00F_IDT)) depends on the configuration: X86Params.f00f_idt.
  * emulate_vsyscall: the vsyscall page is not mapped by the CPU model (vsyscall=none behaviour,
    which v4.0 supports): the fetch fault takes the ordinary SIGSEGV path. The uaccess side of
    vsyscall emulation is modelled: `sig_on_uaccess_error` in no_context().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.kernel.constants import (BUS_ADRERR, BUS_MCEERR_AR, FAULT_FLAG_ALLOW_RETRY,
                                      FAULT_FLAG_KILLABLE, FAULT_FLAG_TRIED, FAULT_FLAG_USER,
                                      FAULT_FLAG_WRITE, ILL_ILLOPN, PAGE_SHIFT, SEGV_ACCERR, SEGV_MAPERR,
                                      SIGBUS, SIGILL, SIGSEGV, VM_EXEC, VM_FAULT_ERROR, VM_FAULT_GET_HINDEX,
                                      VM_FAULT_HWPOISON, VM_FAULT_HWPOISON_LARGE, VM_FAULT_MAJOR,
                                      VM_FAULT_OOM, VM_FAULT_RETRY, VM_FAULT_SIGBUS,
                                      VM_FAULT_SIGSEGV, VM_GROWSDOWN, VM_READ, VM_WRITE)

if TYPE_CHECKING:
    from harness.kernel import Kernel, Vma

    from .cpu import X86Fault

# arch/x86/mm/fault.c v4.0 L35-42
PF_PROT = 1 << 0
PF_WRITE = 1 << 1
PF_USER = 1 << 2
PF_RSVD = 1 << 3
PF_INSTR = 1 << 4

X86_EFLAGS_IF = 0x200
X86_EFLAGS_AC = 0x40000
X86_VM_MASK = 0x20000
X86_TRAP_PF = 14
X86_TRAP_UD = 6
# hstate_index_to_shift(): hstates[0] is the 2 MiB size, hstates[1] 1 GiB (x86_64 with gbpages).
HSTATE_SHIFTS = (21, 30)


@dataclass(frozen=True)
class X86Params:
    name: str
    word_bytes: int          # sizeof(unsigned long)
    task_size_max: int
    kernel_text: int         # the only page init_mm maps that a fault can reach (spurious_fault)
    vmalloc_start: int
    vmalloc_end: int
    smap_config: bool = True  # CONFIG_X86_SMAP
    f00f_idt: int | None = None  # idt_descr.address with the F00F workaround (i386 only)


# -- helpers -----------------------------------------------------------------------------------

def check_prefetch_opcode(p: X86Params, regs: "X86Fault", opcode: int, following: int | None) -> tuple[bool, bool]:
    """L87-132: (continue scanning, is a prefetch)."""
    hi, lo = opcode & 0xF0, opcode & 0x0F
    if hi in (0x20, 0x30):
        return (lo & 7) == 0x6, False
    if hi == 0x40 and p.word_bytes == 8:
        # REX prefixes count in kernel mode or 64-bit user mode; the catalogue has no compat code.
        return True, False
    if hi == 0x60:
        return (lo & 0xC) == 0x4, False
    if hi == 0xF0:
        return (not lo) or (lo >> 1) == 1, False
    if hi == 0x00:
        if following is None:
            return False, False
        return False, lo == 0xF and following in (0x0D, 0x18)
    return False, False


def is_prefetch(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, addr: int) -> bool:
    """L134-166: swallow faults raised by AMD prefetch instructions (reads the bytes at regs->ip)."""
    if error_code & PF_INSTR:
        return False
    if regs.user and regs.ip >= p.task_size_max:
        return False
    insn = regs.insn[:15]
    prefetch = False
    for i, opcode in enumerate(insn):
        following = insn[i + 1] if i + 1 < len(insn) else None
        cont, prefetch = check_prefetch_opcode(p, regs, opcode, following)
        if not cont:
            break
    if prefetch:
        k.decide("is_prefetch", "swallowed", route=False)
    return prefetch


def force_sig_info_fault(k: "Kernel", si_signo: int, si_code: int, address: int, fault: int) -> None:
    """L168-186: si_addr_lsb from the hwpoison bits (HWPOISON tested last, so it wins)."""
    lsb = 0
    if fault & VM_FAULT_HWPOISON_LARGE:
        index = VM_FAULT_GET_HINDEX(fault)
        lsb = HSTATE_SHIFTS[index] if index < len(HSTATE_SHIFTS) else 0
    if fault & VM_FAULT_HWPOISON:
        lsb = PAGE_SHIFT
    k.force_sig_info_fault(si_signo, si_code, address, lsb)


def do_invalid_op(k: "Kernel", regs: "X86Fault") -> None:
    """arch/x86/kernel/traps.c v4.0 DO_ERROR(X86_TRAP_UD, SIGILL) -> do_trap(): kernel regs take
    the exception-table fixup or die("invalid opcode"); user regs get SIGILL/ILL_ILLOPN at ip."""
    if not regs.user:
        if not k.fixup_exception(regs.ip):
            k.task.thread.update(error_code=0, trap_nr=X86_TRAP_UD)
            k.die("invalid opcode")
        return
    k.task.thread.update(error_code=0, trap_nr=X86_TRAP_UD)
    k.force_sig_info_fault(SIGILL, ILL_ILLOPN, regs.ip)


def is_f00f_bug(k: "Kernel", p: X86Params, regs: "X86Fault", address: int) -> bool:
    """L557-575 (CONFIG_X86_F00F_BUG): a fault on IDT entry 6 is the F00F lockup -> #UD."""
    if p.f00f_idt is None or not k.features.get("f00f", False):
        return False
    if (address - p.f00f_idt) % (1 << (8 * p.word_bytes)) >> 3 != 6:
        return False
    k.decide("is_f00f_bug", "do_invalid_op", route=False)
    do_invalid_op(k, regs)
    return True


def check_v8086_mode(k: "Kernel", p: X86Params, regs: "X86Fault", address: int) -> None:
    """L299-311 (i386; empty on x86-64, L443-447): a vm86 fault on the DOS screen memory marks
    it in thread.screen_bitmap."""
    if p.word_bytes != 4 or not regs.flags & X86_VM_MASK:
        return
    bit = ((address - 0xA0000) % (1 << 32)) >> 12
    if bit < 32:
        k.task.thread["screen_bitmap"] = k.task.thread.get("screen_bitmap", 0) | (1 << bit)
        k.decide("check_v8086_mode", f"screen_bitmap bit {bit}", route=False)


def pgtable_bad(k: "Kernel", regs: "X86Fault", error_code: int, address: int) -> None:
    """L620-644: "Bad pagetable" oops, then oops_end(SIGKILL) -> do_exit."""
    k.decide("pgtable_bad")
    k.task.thread.update(cr2=address, trap_nr=X86_TRAP_PF, error_code=error_code)
    k.die("Bad pagetable")


def no_context(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int,
               signal: int, si_code: int) -> None:
    """L646-725: exception-table fixup (plus the sig_on_uaccess_error signal), else oops."""
    if k.fixup_exception(regs.ip):
        # in_interrupt() is never true for a fault taken from a catalogue instruction.
        if k.task.sig_on_uaccess_error and signal:
            k.decide("no_context:fixup_with_signal", f"signal {signal} code {si_code}", route=False)
            k.task.thread.update(trap_nr=X86_TRAP_PF, error_code=error_code | PF_USER, cr2=address)
            force_sig_info_fault(k, signal, si_code, address, 0)
        else:
            k.decide("no_context:fixup", route=False)
        return
    if is_prefetch(k, p, regs, error_code, address):
        return
    k.decide("no_context:oops", route=False)
    k.task.thread.update(cr2=address, trap_nr=X86_TRAP_PF, error_code=error_code)
    k.die("Oops")


def __bad_area_nosemaphore(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int,
                           address: int, si_code: int) -> None:
    """L751-805."""
    if error_code & PF_USER:
        if is_prefetch(k, p, regs, error_code, address):
            return
        # is_errata100 and emulate_vsyscall: not modelled (module docstring).
        if address >= p.task_size_max:
            error_code |= PF_PROT
        k.decide("__bad_area_nosemaphore:user_sigsegv", route=False)
        k.task.thread.update(cr2=address, error_code=error_code, trap_nr=X86_TRAP_PF)
        force_sig_info_fault(k, SIGSEGV, si_code, address, 0)
        return
    if is_f00f_bug(k, p, regs, address):
        return
    no_context(k, p, regs, error_code, address, SIGSEGV, si_code)


def bad_area_nosemaphore(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int) -> None:
    """L807-812."""
    __bad_area_nosemaphore(k, p, regs, error_code, address, SEGV_MAPERR)


def __bad_area(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int, si_code: int) -> None:
    """L814-827: drop mmap_sem, then the nosemaphore path."""
    k.up_read()
    __bad_area_nosemaphore(k, p, regs, error_code, address, si_code)


def bad_area(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int) -> None:
    """L829-833."""
    __bad_area(k, p, regs, error_code, address, SEGV_MAPERR)


def bad_area_access_error(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int) -> None:
    """L835-840."""
    __bad_area(k, p, regs, error_code, address, SEGV_ACCERR)


def do_sigbus(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int, fault: int) -> None:
    """L842-872."""
    if not error_code & PF_USER:
        no_context(k, p, regs, error_code, address, SIGBUS, BUS_ADRERR)
        return
    if is_prefetch(k, p, regs, error_code, address):
        return
    k.task.thread.update(cr2=address, error_code=error_code, trap_nr=X86_TRAP_PF)
    code = BUS_ADRERR
    if fault & (VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE):  # CONFIG_MEMORY_FAILURE
        code = BUS_MCEERR_AR
    k.decide("do_sigbus:user", route=False)
    force_sig_info_fault(k, SIGBUS, code, address, fault)


def mm_fault_error(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int, fault: int) -> None:
    """L874-906: the first matching branch wins."""
    if k.fatal_signal_pending() and not error_code & PF_USER:
        k.decide("mm_fault_error:fatal_signal_kernel")
        no_context(k, p, regs, error_code, address, 0, 0)
        return
    if fault & VM_FAULT_OOM:
        if not error_code & PF_USER:
            k.decide("mm_fault_error:oom_kernel")
            no_context(k, p, regs, error_code, address, SIGSEGV, SEGV_MAPERR)
            return
        k.decide("mm_fault_error:oom_user")
        k.pagefault_out_of_memory()
    else:
        if fault & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE):
            k.decide("mm_fault_error:sigbus")
            do_sigbus(k, p, regs, error_code, address, fault)
        elif fault & VM_FAULT_SIGSEGV:
            k.decide("mm_fault_error:sigsegv")
            bad_area_nosemaphore(k, p, regs, error_code, address)
        else:
            k.decide("mm_fault_error:BUG")
            k.BUG("mm_fault_error: unhandled VM_FAULT_ERROR bits")


def spurious_fault(k: "Kernel", p: X86Params, error_code: int, address: int) -> bool:
    """L940-997: only WRITE|PROT or INSTR|PROT, and only if init_mm's entry already permits it.

    init_mm maps, of what a catalogue instruction can touch, only the kernel text page:
    present, read-only, executable. So a kernel fetch from it would be spurious, a write not.
    """
    if error_code not in (PF_WRITE | PF_PROT, PF_INSTR | PF_PROT):
        return False
    if address >> PAGE_SHIFT != p.kernel_text >> PAGE_SHIFT:
        return False
    spurious = not error_code & PF_WRITE  # spurious_fault_check: RO text, exec allowed
    if spurious:
        k.decide("spurious_fault")
    return spurious


def vmalloc_fault(k: "Kernel", p: X86Params, address: int) -> int:
    """L264/L362: -1 unless init_mm maps the vmalloc address; the simulated init_mm maps none."""
    if not p.vmalloc_start <= address < p.vmalloc_end:
        return -1
    k.decide("vmalloc_fault", "init_mm has no mapping", route=False)
    return -1


def access_error(error_code: int, vma: "Vma") -> bool:
    """L1001-1020: note that exec is never consulted, and any read PF_PROT is an error."""
    if error_code & PF_WRITE:
        return not vma.flags & VM_WRITE
    if error_code & PF_PROT:
        return True
    return not vma.flags & (VM_READ | VM_EXEC | VM_WRITE)


def smap_violation(k: "Kernel", p: X86Params, error_code: int, regs: "X86Fault", smap: bool) -> bool:
    """L1027-1042: any AC-clear supervisor fault on a user address, present or not."""
    if not p.smap_config or not smap:
        return False
    if error_code & PF_USER:
        return False
    if not regs.user and regs.flags & X86_EFLAGS_AC:
        return False
    return True


def __do_page_fault(k: "Kernel", p: X86Params, regs: "X86Fault", error_code: int, address: int,
                    smap: bool) -> None:
    """L1053-1279."""
    flags = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
    major = 0
    tsk = k.task
    mm = k.mm

    if address >= p.task_size_max:  # fault_in_kernel_space()
        if not error_code & (PF_RSVD | PF_USER | PF_PROT):
            if vmalloc_fault(k, p, address) >= 0:
                return
        if spurious_fault(k, p, error_code, address):
            return
        k.decide("kernel_address:bad_area_nosemaphore")
        bad_area_nosemaphore(k, p, regs, error_code, address)
        return

    if error_code & PF_RSVD:
        pgtable_bad(k, regs, error_code, address)

    if smap_violation(k, p, error_code, regs, smap):
        k.decide("smap_violation:bad_area_nosemaphore")
        bad_area_nosemaphore(k, p, regs, error_code, address)
        return

    if k.in_atomic() or mm is None:
        k.decide("atomic_or_no_mm:bad_area_nosemaphore")
        bad_area_nosemaphore(k, p, regs, error_code, address)
        return

    if regs.user:  # user_mode_vm()
        error_code |= PF_USER
        flags |= FAULT_FLAG_USER

    k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS")

    if error_code & PF_WRITE:
        flags |= FAULT_FLAG_WRITE

    if not k.down_read_trylock():
        if not error_code & PF_USER and not k.search_exception_tables(regs.ip):
            k.decide("trylock_failed:bad_area_nosemaphore")
            bad_area_nosemaphore(k, p, regs, error_code, address)
            return
        k.down_read()

    while True:  # retry: (the label sits before down_read; the retry path takes the lock below)
        vma = k.find_vma(address)
        if vma is None:
            k.decide("bad_area", "no vma")
            bad_area(k, p, regs, error_code, address)
            return
        if vma.start > address:
            if not vma.flags & VM_GROWSDOWN:
                k.decide("bad_area", "vma above, not VM_GROWSDOWN")
                bad_area(k, p, regs, error_code, address)
                return
            if error_code & PF_USER:
                cushion = 65536 + 32 * p.word_bytes
                if (address + cushion) % (1 << (8 * p.word_bytes)) < regs.sp:
                    k.decide("bad_area", "below sp - cushion")
                    bad_area(k, p, regs, error_code, address)
                    return
            if k.expand_stack(vma, address):
                k.decide("bad_area", "expand_stack failed")
                bad_area(k, p, regs, error_code, address)
                return
        k.decide("good_area")
        if access_error(error_code, vma):
            k.decide("bad_area_access_error")
            bad_area_access_error(k, p, regs, error_code, address)
            return

        fault = k.handle_mm_fault(vma, address, flags)
        major |= fault & VM_FAULT_MAJOR

        if fault & VM_FAULT_RETRY:
            if flags & FAULT_FLAG_ALLOW_RETRY:
                flags &= ~FAULT_FLAG_ALLOW_RETRY
                flags |= FAULT_FLAG_TRIED
                if not k.fatal_signal_pending():
                    k.decide("retry")
                    k.down_read()
                    continue
            if flags & FAULT_FLAG_USER:
                k.decide("retry_abort_user")
                return
            k.decide("retry_abort_kernel")
            no_context(k, p, regs, error_code, address, SIGBUS, BUS_ADRERR)
            return
        break

    k.up_read()
    if fault & VM_FAULT_ERROR:
        k.decide("mm_fault_error")
        mm_fault_error(k, p, regs, error_code, address, fault)
        return

    if major:
        tsk.maj_flt += 1
        k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MAJ")
        k.decide("account_major")
    else:
        tsk.min_flt += 1
        k.perf_sw_event("PERF_COUNT_SW_PAGE_FAULTS_MIN")
        k.decide("account_minor")
    check_v8086_mode(k, p, regs, address)


def do_page_fault(k: "Kernel", p: X86Params, regs: "X86Fault", smap: bool) -> None:
    """L1282-1300: read CR2 first, then __do_page_fault (exception_enter/exit have no model effect)."""
    __do_page_fault(k, p, regs, regs.error_code, regs.cr2, smap)
