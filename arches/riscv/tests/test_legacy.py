"""The v4.15 riscv do_page_fault() model, decision point by decision point, on hand-built inputs.
Expected values come from arch/riscv/mm/fault.c (blob 148c98ca9b45) as the fact sheet
linux-4.0-faults-arm64-arm-mips-m68k-riscv.md §5.2 gives its lines."""

from __future__ import annotations

import pytest

from arches.riscv import legacy
from arches.riscv.cpu import RiscvFault
from harness.kernel import Kernel, KernelBug, KernelConfig, MmStruct, Oops, Pte, Task, Vma
from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_KILLABLE,
                                      FAULT_FLAG_TRIED, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                                      SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV, VM_EXEC,
                                      VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_RETRY,
                                      VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_GROWSDOWN, VM_READ,
                                      VM_WRITE)
from harness.kernel.mm import FileBacking

KTEXT = 0xFFFFFFE000200000


def regs(cause: int, addr: int, user: bool = True) -> RiscvFault:
    pc = 0x10000 if user else KTEXT
    return RiscvFault(pc=pc, insn=b"\0" * 4, user=user, scause=cause, stval=addr, sepc=pc,
                      sstatus=0x20 if user else 0x120, sp=0x3FFFFF0000)


def kernel(vmas=(), *, extable=(), inject=(), **task) -> Kernel:
    mm = MmStruct(sorted(vmas, key=lambda v: v.start), {})
    return Kernel(mm, Task(**task), KernelConfig(0x4000000000), extable=frozenset(extable), inject=inject)


def test_load_needs_vm_read() -> None:
    """L104-107: a load (13) from a write-only VMA -> bad_area with SEGV_ACCERR (code set at L97)."""
    k = kernel([Vma(0x20000, 0x21000, VM_WRITE)])
    legacy.do_page_fault(k, regs(13, 0x20000))
    assert [s.__dict__ for s in k.task.signals] == [dict(signo=SIGSEGV, code=SEGV_ACCERR, addr=0x20000, addr_lsb=0)]
    assert "access_error(scause 13)" in k.decisions()
    assert k.mm_calls == [] and k.mmap_sem.readers == 0


@pytest.mark.parametrize("cause,flags,bad", [
    (12, VM_READ | VM_WRITE, True), (12, VM_EXEC, False),      # L100-103: fetch needs VM_EXEC
    (15, VM_READ, True), (15, VM_WRITE, False),                 # L108-112: store needs VM_WRITE
    (13, VM_EXEC, True), (13, VM_READ, False)])                 # L104-107
def test_access_error_per_cause(cause: int, flags: int, bad: bool) -> None:
    assert legacy.access_error(cause, Vma(0, 0x1000, flags)) is bad


def test_store_sets_write_flag_and_accounts_minor() -> None:
    """L75-78, L108-112, L122, L145-160: USER|WRITE|ALLOW_RETRY|KILLABLE, raw address, min_flt."""
    k = kernel([Vma(0x20000, 0x21000, VM_READ | VM_WRITE)])
    legacy.do_page_fault(k, regs(15, 0x20123))
    assert k.mm_calls[0].address == 0x20123
    assert k.mm_calls[0].flags == FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_USER | FAULT_FLAG_WRITE
    assert (k.task.maj_flt, k.task.min_flt) == (0, 1)
    assert k.perf == {"PERF_COUNT_SW_PAGE_FAULTS": 1, "PERF_COUNT_SW_PAGE_FAULTS_MIN": 1}
    assert k.mmap_sem.readers == 0


def test_no_vma_is_maperr() -> None:
    """L82-84, L179-185: SEGV_MAPERR at stval."""
    k = kernel([Vma(0x20000, 0x21000, VM_READ)])
    legacy.do_page_fault(k, regs(13, 0x900000))
    assert (k.task.signals[0].signo, k.task.signals[0].code, k.task.signals[0].addr) == (SIGSEGV, SEGV_MAPERR, 0x900000)


def test_stack_grows_with_no_sp_rule() -> None:
    """L86-90: GROWSDOWN + expand_stack only; an address far below sp still grows the stack."""
    stack = Vma(0x3FFFFE0000, 0x3FFFFFF000, VM_READ | VM_WRITE | VM_GROWSDOWN, pgoff=0x3FFFFE0)
    k = kernel([stack])
    legacy.do_page_fault(k, regs(15, 0x3FFFF00000))
    # expand_stack to the faulting page, then check_stack_guard_page (mm/memory.c L2532) keeps
    # one more page below it.
    assert stack.start == 0x3FFFEFF000 and not k.task.signals and k.task.min_flt == 1


def test_kernel_bad_area_fixup_and_oops() -> None:
    """L179-201: kernel bad_area falls into no_context: fixup_exception(sepc), else die."""
    k = kernel([], extable=[KTEXT])
    legacy.do_page_fault(k, regs(13, 0x900000, user=False))
    assert k.fixups == 1 and not k.task.signals
    k = kernel([])
    with pytest.raises(Oops):
        legacy.do_page_fault(k, regs(13, 0x900000, user=False))


def test_atomic_goes_to_no_context_without_lock() -> None:
    """L72-73: faulthandler_disabled() -> no_context, no perf event, no lock."""
    k = kernel([Vma(0x20000, 0x21000, VM_READ)], extable=[KTEXT], in_atomic=True)
    legacy.do_page_fault(k, regs(13, 0x20000, user=False))
    assert k.fixups == 1 and k.perf == {} and k.mm_calls == []


def test_plain_down_read_waits_when_contended() -> None:
    """L80-81: no trylock: a contended mmap_sem is waited for even without an extable entry."""
    k = kernel([Vma(0x20000, 0x21000, VM_READ)])
    k.mmap_sem.writer_holds = True
    legacy.do_page_fault(k, regs(13, 0x20000, user=False))
    assert len(k.mm_calls) == 1 and k.task.min_flt == 1


def test_vmalloc_user_unbalanced_up_read() -> None:
    """L61-62 + vmalloc_fault: a user address in [VMALLOC_START, VMALLOC_END] goes to bad_area,
    whose up_read releases an mmap_sem never taken: a kernel bug."""
    k = kernel([])
    with pytest.raises(KernelBug):
        legacy.do_page_fault(k, regs(13, 0xFFFFFFD000000000))
    k = kernel([])
    with pytest.raises(Oops):  # kernel: init_mm has no entry -> no_context -> oops
        legacy.do_page_fault(k, regs(13, 0xFFFFFFDFFFFFFFFF, user=False))


def test_sigbus_user_and_kernel() -> None:
    """L214-220: BUS_ADRERR for the user; kernel -> no_context."""
    vma = Vma(0x20000, 0x21000, VM_READ, file=FileBacking(0))
    k = kernel([vma])
    legacy.do_page_fault(k, regs(13, 0x20000))
    assert (k.task.signals[0].signo, k.task.signals[0].code) == (SIGBUS, BUS_ADRERR)
    assert k.task.min_flt == 0  # error: no accounting (L132-138 before L145)


def test_oom_user_and_unexpected_error_bug() -> None:
    """L132-138, L207-212: OOM -> pagefault_out_of_memory for the user; SIGSEGV -> BUG()."""
    k = kernel([Vma(0x20000, 0x21000, VM_READ)], inject=(VM_FAULT_OOM,))
    legacy.do_page_fault(k, regs(13, 0x20000))
    assert any(e.what == "pagefault_out_of_memory" for e in k.trace) and not k.task.signals
    k = kernel([Vma(0x20000, 0x21000, VM_READ)], inject=(VM_FAULT_SIGSEGV,))
    with pytest.raises(KernelBug):
        legacy.do_page_fault(k, regs(13, 0x20000))


def test_retry_accounts_first_pass_only() -> None:
    """L145-170: pass 1 RETRY (page locked) counts min_flt and retries with TRIED; pass 2's
    MAJOR is not counted."""
    vma = Vma(0x20000, 0x21000, VM_READ, file=FileBacking(0x1000, "locked"))
    k = kernel([vma], inject=(None, VM_FAULT_MAJOR))
    legacy.do_page_fault(k, regs(13, 0x20000))
    assert [c.result & VM_FAULT_RETRY for c in k.mm_calls] == [VM_FAULT_RETRY, 0]
    assert k.mm_calls[1].flags & FAULT_FLAG_TRIED and not k.mm_calls[1].flags & FAULT_FLAG_ALLOW_RETRY
    assert (k.task.maj_flt, k.task.min_flt) == (0, 1)
    assert k.mmap_sem.readers == 0


def test_retry_with_fatal_signal_returns_in_kernel_mode() -> None:
    """L129-130: RETRY with a fatal signal pending returns, also in kernel mode (no no_context)."""
    vma = Vma(0x20000, 0x21000, VM_READ, file=FileBacking(0x1000, "locked"))
    k = kernel([vma], fatal_signal=True)
    legacy.do_page_fault(k, regs(13, 0x20000, user=False))
    assert k.fixups == 0 and not k.task.signals and k.task.min_flt == 0
    assert k.mmap_sem.readers == 0
