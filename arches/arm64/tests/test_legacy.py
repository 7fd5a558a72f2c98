"""The arm64 legacy model against arch/arm64/mm/fault.c and kernel/entry.S v4.0, decision point by
decision point. Native faults are built by hand (ESR values per the ARM ARM); expected results are
what the C does, with its line numbers."""

from __future__ import annotations

import pytest

from arches.arm64 import convert, legacy
from arches.arm64.cpu import LAYOUT, Arm64Fault
from harness.generic import fixed, rfc2015
from harness.kernel import FileBacking, Kernel, KernelConfig, MmStruct, Oops, Pte, Task, Vma
from harness.kernel.constants import (BUS_ADRALN, BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY,
                                      FAULT_FLAG_EXEC, FAULT_FLAG_KILLABLE, FAULT_FLAG_PROT,
                                      FAULT_FLAG_USER, FAULT_FLAG_WRITE, SEGV_ACCERR, SEGV_MAPERR,
                                      SIGBUS, SIGSEGV, VM_EXEC, VM_FAULT_HWPOISON, VM_FAULT_OOM,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_GROWSDOWN,
                                      VM_READ, VM_WRITE)
from harness.kernel.mm import MmLimits

A = 0x10000000
UPC, KPC = LAYOUT.user_text, LAYOUT.kernel_text
# ESRs (ARM ARM ESR_ELx): EC<<26 | IL | WnR(bit 6) | FSC
EL0_READ_L3 = 0x92000007
EL0_WRITE_L3 = 0x92000047
EL0_READ_L2 = 0x92000006
EL0_WRITE_PERM = 0x9200004F
EL0_READ_PERM = 0x9200000F
EL0_FETCH_L3 = 0x82000007
EL1_READ_L3 = 0x96000007
EL1_READ_L2 = 0x96000006
EL1_FETCH_PERM = 0x8600000F
EL0_ALIGN = 0x92000021
EL0_EXTABT = 0x92000010
CM = 1 << 8


def regs(esr: int, far: int, *, user: bool = True, pc: int | None = None) -> Arm64Fault:
    pc = pc if pc is not None else (UPC if user else KPC)
    return Arm64Fault(pc=pc, insn=b"\x20\x00\x40\xf9", user=user, esr=esr, far=far,
                      pstate=0x0 if user else 0x3C5, sp=0x7FFFFFF000)


def kernel(vmas=(), ptes=None, *, fatal=False, atomic=False, no_mm=False, extable=False, inject=(),
           contended=False) -> Kernel:
    mm = None if no_mm else MmStruct(sorted(vmas, key=lambda v: v.start), dict(ptes or {}),
                                     MmLimits(mmap_min_addr=4096))
    return Kernel(mm, Task(fatal_signal=fatal, in_atomic=atomic), KernelConfig(LAYOUT.task_size),
                  extable=frozenset({KPC}) if extable else frozenset(), inject=tuple(inject),
                  mmap_sem_contended=contended)


def anon(start=A, end=A + 0x1000, flags=VM_READ | VM_WRITE) -> Vma:
    return Vma(start, end, flags, pgoff=start >> 12)


def signals(k):
    return [(s.signo, s.code, s.addr) for s in k.task.signals]


def mm_flags(k):
    return [c.flags for c in k.mm_calls]


U = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_USER


def test_fault_info_table_routes():
    # L373-443
    assert legacy.FAULT_INFO[7][0] == "do_page_fault"
    assert [legacy.FAULT_INFO[i][0] for i in (4, 5, 6)] == ["do_translation_fault"] * 3
    assert [legacy.FAULT_INFO[i][0] for i in (9, 10, 11, 13, 14, 15)] == ["do_page_fault"] * 6
    assert [legacy.FAULT_INFO[i][0] for i in (0, 3, 8, 12, 16, 33, 63)] == ["do_bad"] * 7
    assert legacy.FAULT_INFO[33][1:3] == (SIGBUS, BUS_ADRALN)
    assert legacy.FAULT_INFO[16][1:3] == (SIGBUS, 0)


def test_user_read_no_vma_maperr_and_accounting():
    # L163-166 BADMAP; L265 perf once; L266-275 min_flt on the first pass even for BADMAP; L319-327.
    k = kernel()
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]
    assert k.task.min_flt == 1 and k.task.maj_flt == 0
    assert k.perf == {"PERF_COUNT_SW_PAGE_FAULTS": 1, "PERF_COUNT_SW_PAGE_FAULTS_MIN": 1}
    assert k.task.thread == {"fault_address": A, "fault_code": EL0_READ_L3}  # L127-128
    assert k.mmap_sem.readers == 0


def test_translation_fault_above_task_size_goes_to_do_bad_area_without_lock():
    # L358-361: DFSC 4-6 with addr >= TASK_SIZE -> do_bad_area -> SIGSEGV/MAPERR; no mmap_sem, no perf.
    far = LAYOUT.task_size + 0x1000
    k = kernel([anon()])
    legacy.handle(k, regs(EL0_READ_L2, far))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, far)]
    assert k.perf == {} and k.mm_calls == []
    # kernel mode: __do_kernel_fault -> fixup (L91-92)
    k = kernel([anon()], extable=True)
    legacy.handle(k, regs(EL1_READ_L2, far, user=False))
    assert k.fixups == 1 and signals(k) == []


def test_level3_translation_fault_above_task_size_reaches_do_page_fault():
    # L386: DFSC 7 goes straight to do_page_fault; find_vma fails -> BADMAP -> MAPERR.
    far = LAYOUT.task_size + 0x1000
    k = kernel([anon()])
    legacy.handle(k, regs(EL0_READ_L3, far))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, far)]
    assert k.perf["PERF_COUNT_SW_PAGE_FAULTS"] == 1


def test_el0_da_strips_tag_el1_da_does_not():
    # entry.S L455: bic x0, x26, #(0xff << 56) for EL0 data aborts only.
    tagged = (0x5A << 56) | A
    k = kernel()
    legacy.handle(k, regs(EL0_READ_L3, tagged))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]
    k = kernel([anon()])  # EL1: tagged addr >= TASK_SIZE with DFSC 6 -> do_bad_area -> oops
    with pytest.raises(Oops):
        legacy.handle(k, regs(EL1_READ_L2, tagged, user=False))


def test_exec_uses_vm_exec_mask():
    # entry.S L469 ORs 1<<24; L220-221: vm_flags = VM_EXEC.
    k = kernel([anon(flags=VM_READ | VM_WRITE)])
    legacy.handle(k, regs(EL0_FETCH_L3, A, pc=A))
    assert signals(k) == [(SIGSEGV, SEGV_ACCERR, A)]  # L180-183 BADACCESS -> L325 ACCERR
    k = kernel([anon(flags=VM_EXEC)])  # exec-only is fine
    legacy.handle(k, regs(EL0_FETCH_L3, A, pc=A))
    assert signals(k) == [] and mm_flags(k) == [U]  # no FAULT_FLAG_WRITE for an exec fault


def test_read_accepts_any_permission():
    # L200 + L180: the mask R|W|X accepts a write-only or exec-only vma for a read.
    for flags in (VM_WRITE, VM_EXEC):
        k = kernel([anon(flags=flags)])
        legacy.handle(k, regs(EL0_READ_L3, A))
        assert signals(k) == [] and mm_flags(k) == [U]
    k = kernel([anon(flags=0)])
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert signals(k) == [(SIGSEGV, SEGV_ACCERR, A)]


def test_write_needs_vm_write_and_cm_is_a_read():
    # L222-225
    k = kernel([anon(flags=VM_READ)])
    legacy.handle(k, regs(EL0_WRITE_L3, A))
    assert signals(k) == [(SIGSEGV, SEGV_ACCERR, A)]
    k = kernel([anon(flags=VM_READ)])
    legacy.handle(k, regs(EL0_WRITE_L3 | CM, A))  # cache maintenance: WnR=1 but not a write
    assert signals(k) == [] and mm_flags(k) == [U]
    k = kernel([anon()])
    legacy.handle(k, regs(EL0_WRITE_L3, A))
    assert mm_flags(k) == [U | FAULT_FLAG_WRITE]


def test_read_permission_fault_is_not_an_error():
    # No prot/not-present distinction in the access check: a permission fault on a readable vma
    # goes to handle_mm_fault (L180, L185).
    k = kernel([anon()], {A: Pte("present", user=False)})
    legacy.handle(k, regs(EL0_READ_PERM, A))
    assert signals(k) == [] and len(k.mm_calls) == 1


def test_handle_mm_fault_gets_page_aligned_address():
    # L185
    k = kernel([anon()])
    legacy.handle(k, regs(EL0_READ_L3, A + 0x123))
    assert k.mm_calls[0].address == A


def test_stack_grows_without_any_sp_check():
    # L187-191: far below sp, still expanded.
    stack = Vma(0x7FFF000000, 0x7FFF010000, VM_READ | VM_WRITE | VM_GROWSDOWN, pgoff=0x7FFF000000 >> 12)
    addr = 0x7FFF000000 - 0x100000
    k = kernel([stack])
    legacy.handle(k, regs(EL0_WRITE_L3, addr))
    assert signals(k) == [] and stack.start <= addr  # (the guard page takes one more below)
    k = kernel([anon(flags=VM_READ | VM_WRITE)])  # not GROWSDOWN -> BADMAP
    legacy.handle(k, regs(EL0_READ_L3, A - 0x1000))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A - 0x1000)]


def test_in_atomic_goes_to_no_context_even_from_user_mode():
    # L214-215: no_context -> __do_kernel_fault: no extable entry for a user pc -> oops.
    k = kernel([anon()], atomic=True)
    with pytest.raises(Oops):
        legacy.handle(k, regs(EL0_READ_L3, A))
    k = kernel([anon()], no_mm=True, extable=True)
    legacy.handle(k, regs(EL1_READ_L3, A, user=False))
    assert k.fixups == 1


def test_trylock_failure():
    # L232-236: kernel without an extable entry -> no_context (oops); user -> down_read and proceed.
    k = kernel([anon()], contended=True)
    with pytest.raises(Oops):
        legacy.handle(k, regs(EL1_READ_L3, A, user=False))
    assert k.mm_calls == []
    k = kernel([anon()], contended=True)
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert signals(k) == [] and len(k.mm_calls) == 1 and k.mmap_sem.readers == 0


def test_retry_clears_allow_retry_without_tried_and_counts_perf_twice():
    # L266-283: accounting on the first pass only, ALLOW_RETRY cleared, TRIED not set; L265 per pass.
    k = kernel([anon()], inject=[VM_FAULT_RETRY])
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert mm_flags(k) == [U, FAULT_FLAG_KILLABLE | FAULT_FLAG_USER]
    assert k.perf == {"PERF_COUNT_SW_PAGE_FAULTS": 2, "PERF_COUNT_SW_PAGE_FAULTS_MIN": 1}
    assert k.task.min_flt == 1 and signals(k) == [] and k.mmap_sem.readers == 0


def test_retry_with_fatal_signal_returns_in_kernel_mode_too():
    # L256-257: return 0 before any accounting, with mmap_sem already dropped by the core.
    f = FileBacking(0x1000, "locked")
    vma = Vma(A, A + 0x1000, VM_READ, file=f)
    k = kernel([vma], fatal=True, extable=True)
    legacy.handle(k, regs(EL1_READ_L3, A, user=False))
    assert k.fixups == 0 and signals(k) == [] and k.perf == {} and k.mmap_sem.readers == 0


def test_error_results_user():
    # L302-327
    k = kernel([anon()], inject=[VM_FAULT_OOM])
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert signals(k) == [] and any(e.what == "pagefault_out_of_memory" for e in k.trace)
    k = kernel([anon()], inject=[VM_FAULT_SIGBUS])
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert signals(k) == [(SIGBUS, BUS_ADRERR, A)]
    k = kernel([anon()], inject=[VM_FAULT_SIGSEGV])
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]   # equality test: not BADACCESS -> MAPERR
    k = kernel([anon()], inject=[VM_FAULT_HWPOISON])
    legacy.handle(k, regs(EL0_READ_L3, A))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]


def test_error_results_kernel_take_no_context():
    # L299-300: any error in kernel mode, OOM included -> __do_kernel_fault.
    for inj in (VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV):
        k = kernel([anon()], inject=[inj], extable=True)
        legacy.handle(k, regs(EL1_READ_L3, A, user=False))
        assert k.fixups == 1 and signals(k) == []
    k = kernel([anon(flags=VM_READ)])
    with pytest.raises(Oops):
        legacy.handle(k, regs(0x96000047, A, user=False))  # BADACCESS, no extable -> oops


def test_do_bad_alignment_user_and_kernel():
    # do_mem_abort L460-470 + arm64_notify_die (traps.c L251-261): user -> SIGBUS/BUS_ADRALN with
    # thread.fault_address = 0; kernel -> die, no fixup even with an extable entry.
    k = kernel([anon()])
    legacy.handle(k, regs(EL0_ALIGN, A + 4))
    assert signals(k) == [(SIGBUS, BUS_ADRALN, A + 4)]
    assert k.task.thread["fault_address"] == 0
    k = kernel([anon()])
    legacy.handle(k, regs(EL0_EXTABT, A))
    assert signals(k) == [(SIGBUS, 0, A)]
    k = kernel([anon()], extable=True)
    with pytest.raises(Oops):
        legacy.handle(k, regs(0x96000021, A, user=False))
    assert k.fixups == 0


def test_el1_instruction_abort_is_bad_mode():
    # entry.S L269-285: EC 0x21 is not dispatched -> el1_inv -> bad_mode -> die.
    k = kernel([anon(flags=VM_READ | VM_EXEC)], extable=True)
    with pytest.raises(Oops):
        legacy.handle(k, regs(EL1_FETCH_PERM, A, user=False, pc=A))
    assert k.mm_calls == [] and k.fixups == 0


# -- the conversion -----------------------------------------------------------------------------

def test_conversion_fault_flags():
    assert convert.fault_flags(regs(EL0_READ_L3, A), EL0_READ_L3) == U
    assert convert.fault_flags(regs(EL0_WRITE_L3, A), EL0_WRITE_L3) == U | FAULT_FLAG_WRITE
    assert convert.fault_flags(regs(EL0_WRITE_L3, A), EL0_WRITE_L3 | CM) == U
    assert convert.fault_flags(regs(EL0_WRITE_PERM, A), EL0_WRITE_PERM) == U | FAULT_FLAG_WRITE | FAULT_FLAG_PROT
    esr = EL0_FETCH_L3 | legacy.ESR_LNX_EXEC
    assert convert.fault_flags(regs(esr, A), esr) == U | FAULT_FLAG_EXEC
    assert convert.fault_flags(regs(EL1_READ_L3, A, user=False), EL1_READ_L3) == FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE


def test_conversion_access_error_hook_is_the_legacy_mask():
    h = convert.HOOKS
    r = regs(EL0_READ_L3, A)
    assert h.access_error(r, FAULT_FLAG_EXEC, anon(flags=VM_READ | VM_WRITE))
    assert not h.access_error(r, FAULT_FLAG_EXEC, anon(flags=VM_EXEC))
    assert not h.access_error(r, FAULT_FLAG_PROT, anon(flags=VM_WRITE))
    assert h.access_error(r, 0, anon(flags=0))


@pytest.mark.parametrize("variant", [rfc2015.generic_page_fault, fixed.generic_page_fault])
def test_conversion_user_paths(variant):
    k = kernel([anon(flags=VM_READ)])
    convert.handle(k, regs(EL0_WRITE_L3, A), variant)
    assert signals(k) == [(SIGSEGV, SEGV_ACCERR, A)]  # VM_FAULT_ACCESS -> SEGV_ACCERR
    k = kernel()
    convert.handle(k, regs(EL0_READ_L3, A + 0x10), variant)
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A + 0x10)]
    k = kernel([anon()])
    convert.handle(k, regs(EL0_READ_L3, A + 0x10), variant)
    assert k.mm_calls[0].address == A  # the conversion passes the page-aligned address (L185)
