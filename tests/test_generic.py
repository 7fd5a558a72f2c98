"""The generic handler variants against the RFC posting (mm/fault.c as posted), decision by decision.

Expected results are read off the posted C (quoted by function and condition in each test); the
same scenarios under `fixed` show each correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import make_kernel

from harness.arch import NativeFault
from harness.generic import VariantError, load_variant
from harness.generic import fixed, rfc2015
from harness.kernel import FileBacking, KernelBug, Pte, Vma
from harness.kernel.constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC, FAULT_FLAG_KILLABLE,
                                      FAULT_FLAG_PROT, FAULT_FLAG_USER, FAULT_FLAG_WRITE, VM_EXEC,
                                      VM_FAULT_ACCESS, VM_FAULT_FALLBACK, VM_FAULT_MAJOR, VM_FAULT_OOM,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_GROWSDOWN,
                                      VM_READ, VM_WRITE)

A = 0x10000000
BASE = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE
USER = BASE | FAULT_FLAG_USER
REGS = NativeFault(pc=0x400000, insn=b"", user=True)


@dataclass
class Hooks:
    grow: bool = True

    def stack_can_grow(self, regs, flags, address, vma):
        return self.grow

    def instruction_pointer(self, regs):
        return regs.pc


def run(variant, k, flags, addr=A, hooks=None):
    return variant.generic_page_fault(k, hooks or Hooks(), REGS, flags, addr)


@pytest.mark.parametrize("variant", [rfc2015, fixed])
def test_no_vma_is_bad_area_sigsegv_without_access(variant):
    # find_vma() == NULL -> goto bad_area -> up_read; return VM_FAULT_SIGSEGV.
    k = make_kernel([])
    assert run(variant, k, USER) == VM_FAULT_SIGSEGV
    assert k.mmap_sem.readers == 0


@pytest.mark.parametrize("variant", [rfc2015, fixed])
def test_write_to_read_only_vma_is_bad_access(variant):
    # access_error(): FAULT_FLAG_WRITE && !(vm_flags & VM_WRITE) -> SIGSEGV|ACCESS.
    k = make_kernel([Vma(A, A + 0x1000, VM_READ)])
    assert run(variant, k, USER | FAULT_FLAG_WRITE) == VM_FAULT_SIGSEGV | VM_FAULT_ACCESS


def test_rfc_exec_check_tests_vm_write():
    # Posted: `if (flags & FAULT_FLAG_EXEC) { if (!(vma->vm_flags & VM_WRITE)) return true; }`.
    k = make_kernel([Vma(A, A + 0x1000, VM_READ | VM_EXEC, pgoff=A >> 12)])
    assert run(rfc2015, k, USER | FAULT_FLAG_EXEC) == VM_FAULT_SIGSEGV | VM_FAULT_ACCESS
    k = make_kernel([Vma(A, A + 0x1000, VM_READ | VM_WRITE, pgoff=A >> 12)])
    assert run(rfc2015, k, USER | FAULT_FLAG_EXEC) & VM_FAULT_SIGSEGV == 0
    # fixed tests VM_EXEC.
    k = make_kernel([Vma(A, A + 0x1000, VM_READ | VM_EXEC, pgoff=A >> 12)])
    assert run(fixed, k, USER | FAULT_FLAG_EXEC) & VM_FAULT_SIGSEGV == 0
    k = make_kernel([Vma(A, A + 0x1000, VM_READ | VM_WRITE, pgoff=A >> 12)])
    assert run(fixed, k, USER | FAULT_FLAG_EXEC) == VM_FAULT_SIGSEGV | VM_FAULT_ACCESS


def test_rfc_prot_check_never_fires_read_prot_fault_reaches_core():
    # Posted: `if (unlikely(flags & PF_PROT)) return true;` with PF_PROT == 1 == FAULT_FLAG_WRITE,
    # dead after the write branch: a read protection fault on a present PTE goes to
    # handle_mm_fault(), which returns 0 (present PTE), and is accounted as a minor fault.
    k = make_kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], {A: Pte(user=False)})
    assert run(rfc2015, k, USER | FAULT_FLAG_PROT) == 0
    assert k.task.min_flt == 1 and len(k.mm_calls) == 1
    k = make_kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], {A: Pte(user=False)})
    assert run(fixed, k, USER | FAULT_FLAG_PROT) == VM_FAULT_SIGSEGV | VM_FAULT_ACCESS


@pytest.mark.parametrize("variant", [rfc2015, fixed])
def test_stack_can_grow_refusal_is_bad_area_only_for_user(variant):
    # `if ((flags & FAULT_FLAG_USER) && !stack_can_grow(...)) goto bad_area;`
    stack = lambda: [Vma(A + 0x1000, A + 0x2000, VM_READ | VM_WRITE | VM_GROWSDOWN, pgoff=(A >> 12) + 1)]
    k = make_kernel(stack())
    assert run(variant, k, USER, hooks=Hooks(grow=False)) == VM_FAULT_SIGSEGV
    k = make_kernel(stack())
    assert run(variant, k, BASE, hooks=Hooks(grow=False)) == 0
    # expand_stack() to A, then check_stack_guard_page() grows one more page below the fault.
    assert k.mm.vmas[0].start == A - 0x1000


@pytest.mark.parametrize("variant", [rfc2015, fixed])
def test_retry_once_then_major_is_restored(variant):
    # RETRY with ALLOW_RETRY and no fatal signal -> goto retry (down_read); `major |= fault &
    # VM_FAULT_MAJOR` survives, the success path ORs VM_FAULT_MAJOR back and counts maj_flt once.
    k = make_kernel([Vma(A, A + 0x1000, VM_READ, FileBacking(0x1000, "absent"))])
    assert run(variant, k, USER) == VM_FAULT_MAJOR
    assert (k.task.maj_flt, k.task.min_flt) == (1, 0)
    assert [c.flags & FAULT_FLAG_ALLOW_RETRY for c in k.mm_calls] == [FAULT_FLAG_ALLOW_RETRY, 0]
    assert k.perf == {"PERF_COUNT_SW_PAGE_FAULTS": 1, "PERF_COUNT_SW_PAGE_FAULTS_MAJ": 1}


def test_rfc_retry_abort_user_returns_no_error_and_kernel_returns_sigbus():
    # Fatal signal pending: user -> `return FAULT_NO_ERR` (read as 0); kernel -> fault|SIGBUS.
    vma = lambda: [Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)]
    k = make_kernel(vma(), inject=[VM_FAULT_RETRY], fatal=True)
    assert run(rfc2015, k, USER) == 0
    assert k.task.min_flt == 0 and k.mmap_sem.readers == 0
    k = make_kernel(vma(), inject=[VM_FAULT_RETRY], fatal=True)
    assert run(rfc2015, k, BASE) == VM_FAULT_RETRY | VM_FAULT_SIGBUS


def test_mm_fault_error_branches_as_posted():
    vma = lambda: [Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)]
    # fatal signal && !USER -> fault | VM_FAULT_SIGBUS ("XXX Hack").
    k = make_kernel(vma(), inject=[VM_FAULT_OOM], fatal=True)
    assert run(rfc2015, k, BASE) == VM_FAULT_OOM | VM_FAULT_SIGBUS
    # OOM, kernel -> fault | VM_FAULT_SIGSEGV.
    k = make_kernel(vma(), inject=[VM_FAULT_OOM])
    assert run(rfc2015, k, BASE) == VM_FAULT_OOM | VM_FAULT_SIGSEGV
    # OOM, user -> pagefault_out_of_memory(); return fault & ~VM_FAULT_ERROR (no accounting).
    k = make_kernel(vma(), inject=[VM_FAULT_OOM])
    assert run(rfc2015, k, USER) == 0
    assert any(e.what == "pagefault_out_of_memory" for e in k.trace) and k.task.min_flt == 0
    # SIGBUS -> fault | VM_FAULT_SIGBUS; SIGSEGV -> fault.
    k = make_kernel(vma(), inject=[VM_FAULT_SIGBUS])
    assert run(rfc2015, k, USER) == VM_FAULT_SIGBUS
    k = make_kernel(vma(), inject=[VM_FAULT_SIGSEGV])
    assert run(rfc2015, k, USER) == VM_FAULT_SIGSEGV
    # An error bit none of the branches names (FALLBACK alone) -> BUG(). The core never returns
    # FALLBACK (so injections drop it); the branch is reached by calling mm_fault_error directly.
    k = make_kernel(vma())
    with pytest.raises(KernelBug):
        rfc2015.mm_fault_error(k, REGS, USER, A, VM_FAULT_FALLBACK)


def test_fixed_marks_fatal_signal_in_kernel_mode():
    k = make_kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], inject=[VM_FAULT_OOM], fatal=True)
    assert run(fixed, k, BASE) & fixed.VM_FAULT_FATAL_SIGNAL


@pytest.mark.parametrize("variant", [rfc2015, fixed])
def test_trylock_failure_in_kernel_without_extable_returns_sigsegv(variant):
    # `if (!(flags & FAULT_FLAG_USER) && !search_exception_tables(GET_IP(regs))) return VM_FAULT_SIGSEGV;`
    k = make_kernel([Vma(A, A + 0x1000, VM_READ)], contended=True)
    assert run(variant, k, BASE) == VM_FAULT_SIGSEGV
    assert k.mmap_sem.readers == 0 and not k.mm_calls
    k = make_kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], contended=True, extable={REGS.pc})
    assert run(variant, k, BASE) == 0


def test_variants_load_by_name_and_reject_unknown():
    assert load_variant("rfc2015").handler is rfc2015.generic_page_fault
    assert load_variant("harness.generic.fixed:generic_page_fault").handler is fixed.generic_page_fault
    with pytest.raises(VariantError):
        load_variant("nope")
    with pytest.raises(VariantError):
        load_variant("no.such.module:f")
