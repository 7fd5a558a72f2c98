"""The simulated handle_mm_fault() against mm/memory.c and mm/filemap.c v4.0, branch by branch.

Expected values are read off the v4.0 source (line numbers in each test), not off the model.
"""

from __future__ import annotations

import pytest
from conftest import make_kernel

from harness.kernel import FileBacking, KernelBug, Pte, Vma
from harness.kernel.constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_KILLABLE, FAULT_FLAG_RETRY_NOWAIT,
                                      FAULT_FLAG_TRIED, FAULT_FLAG_USER, FAULT_FLAG_WRITE, VM_EXEC,
                                      VM_FAULT_HWPOISON, VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_RETRY,
                                      VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_FAULT_WRITE, VM_GROWSDOWN,
                                      VM_READ, VM_SHARED, VM_WRITE)
from harness.kernel.mm import MmLimits

A = 0x10000000
RW = VM_READ | VM_WRITE
X86_FLAGS = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_USER  # 0x54


def fault(k, vma, addr, flags):
    k.down_read_trylock()
    return k.handle_mm_fault(vma, addr, flags)


def test_present_pte_read_returns_0_and_changes_nothing_but_young():
    # handle_pte_fault L3131: present, not a write -> pte_mkyoung, return 0.
    vma = Vma(A, A + 0x1000, RW, pgoff=A >> 12)
    k = make_kernel([vma], {A: Pte(write=False, young=False)})
    assert fault(k, vma, A, X86_FLAGS) == 0
    assert k.mm.ptes[A] == Pte(write=False, young=True)


def test_anon_read_maps_zero_page_read_only():
    # do_anonymous_page L2581: reads map the zero page with vm_page_prot (never writable).
    vma = Vma(A, A + 0x1000, RW, pgoff=A >> 12)
    k = make_kernel([vma])
    assert fault(k, vma, A + 8, X86_FLAGS) == 0
    assert k.mm.ptes[A].present and not k.mm.ptes[A].write


def test_anon_write_maps_writable_dirty_page():
    # do_anonymous_page L2606: VM_WRITE -> pte_mkwrite(pte_mkdirty()).
    vma = Vma(A, A + 0x1000, RW, pgoff=A >> 12)
    k = make_kernel([vma])
    assert fault(k, vma, A, X86_FLAGS | FAULT_FLAG_WRITE) == 0
    assert k.mm.ptes[A].write and k.mm.ptes[A].dirty


def test_write_to_read_only_present_pte_is_cow_with_vm_fault_write():
    # handle_pte_fault L3168: write && !pte_write -> do_wp_page, which returns VM_FAULT_WRITE.
    vma = Vma(A, A + 0x1000, RW, pgoff=A >> 12)
    k = make_kernel([vma], {A: Pte(write=False)})
    assert fault(k, vma, A, X86_FLAGS | FAULT_FLAG_WRITE) == VM_FAULT_WRITE
    assert k.mm.ptes[A].write and k.mm.ptes[A].dirty


def test_cow_in_vma_without_vm_write_leaves_pte_read_only():
    # maybe_mkwrite() only sets the write bit when the VMA has VM_WRITE (mm.h).
    vma = Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)
    k = make_kernel([vma], {A: Pte(write=False)})
    assert fault(k, vma, A, X86_FLAGS | FAULT_FLAG_WRITE) == VM_FAULT_WRITE
    assert not k.mm.ptes[A].write


def test_file_page_beyond_eof_is_sigbus():
    # filemap_fault: offset >= round_up(i_size)>>PAGE_SHIFT -> VM_FAULT_SIGBUS.
    vma = Vma(A, A + 0x2000, VM_READ, FileBacking(0x1000))
    k = make_kernel([vma])
    assert fault(k, vma, A + 0x1000, X86_FLAGS) == VM_FAULT_SIGBUS
    assert A + 0x1000 not in k.mm.ptes


def test_file_size_rounds_up_to_a_page():
    # round_up(i_size, PAGE_CACHE_SIZE): one byte into the page makes the whole page valid.
    vma = Vma(A, A + 0x2000, VM_READ, FileBacking(0x1001))
    k = make_kernel([vma])
    assert fault(k, vma, A + 0x1000, X86_FLAGS) == 0


def test_page_cache_miss_is_major_and_retries_with_mmap_sem_dropped():
    # filemap_fault: no page -> sync readahead, PGMAJFAULT, ret = VM_FAULT_MAJOR; the page is
    # locked for I/O, so lock_page_or_retry() with ALLOW_RETRY drops mmap_sem: MAJOR|RETRY.
    vma = Vma(A, A + 0x1000, VM_READ, FileBacking(0x1000, "absent"))
    k = make_kernel([vma])
    assert fault(k, vma, A, X86_FLAGS) == VM_FAULT_MAJOR | VM_FAULT_RETRY
    assert k.mmap_sem.readers == 0
    # Second try (ALLOW_RETRY cleared, TRIED set): page now cached and unlocked -> minor, mapped.
    k.down_read()
    assert k.handle_mm_fault(vma, A, FAULT_FLAG_KILLABLE | FAULT_FLAG_TRIED | FAULT_FLAG_USER) == 0
    assert k.mm.ptes[A].present


def test_locked_page_without_allow_retry_waits():
    # __lock_page_or_retry: no ALLOW_RETRY, no fatal signal -> __lock_page, returns 1 (locked).
    vma = Vma(A, A + 0x1000, VM_READ, FileBacking(0x1000, "locked"))
    k = make_kernel([vma])
    assert fault(k, vma, A, FAULT_FLAG_KILLABLE) == 0
    assert k.mmap_sem.readers == 1


def test_locked_page_killable_with_fatal_signal_retries_and_drops_mmap_sem():
    # __lock_page_or_retry: KILLABLE and __lock_page_killable fails -> up_read, return 0 -> RETRY.
    vma = Vma(A, A + 0x1000, VM_READ, FileBacking(0x1000, "locked"))
    k = make_kernel([vma], fatal=True)
    assert fault(k, vma, A, FAULT_FLAG_KILLABLE | FAULT_FLAG_TRIED) == VM_FAULT_RETRY
    assert k.mmap_sem.readers == 0


def test_retry_nowait_keeps_mmap_sem():
    # __lock_page_or_retry: ALLOW_RETRY|RETRY_NOWAIT -> return 0 without up_read.
    vma = Vma(A, A + 0x1000, VM_READ, FileBacking(0x1000, "locked"))
    k = make_kernel([vma])
    assert fault(k, vma, A, FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_RETRY_NOWAIT) == VM_FAULT_RETRY
    assert k.mmap_sem.readers == 1


def test_stack_guard_page_below_abutting_non_stack_vma_is_sigsegv():
    # check_stack_guard_page L2532: fault in the lowest page of a GROWSDOWN VMA whose prev ends
    # exactly there and is not GROWSDOWN -> -ENOMEM -> do_anonymous_page returns VM_FAULT_SIGSEGV.
    below = Vma(A - 0x1000, A, RW, pgoff=(A - 0x1000) >> 12)
    stack = Vma(A, A + 0x2000, RW | VM_GROWSDOWN, pgoff=A >> 12)
    k = make_kernel([below, stack])
    assert fault(k, stack, A, X86_FLAGS | FAULT_FLAG_WRITE) == VM_FAULT_SIGSEGV


def test_stack_guard_page_expands_one_more_page():
    # check_stack_guard_page: no abutting VMA -> expand_downwards(vma, address - PAGE_SIZE).
    stack = Vma(A, A + 0x2000, RW | VM_GROWSDOWN, pgoff=A >> 12)
    k = make_kernel([stack])
    assert fault(k, stack, A, X86_FLAGS | FAULT_FLAG_WRITE) == 0
    assert stack.start == A - 0x1000


def test_stack_guard_expansion_beyond_rlimit_is_sigsegv():
    # acct_stack_growth: size - PAGE_SIZE > RLIMIT_STACK -> -ENOMEM -> VM_FAULT_SIGSEGV.
    stack = Vma(A, A + 0x2000, RW | VM_GROWSDOWN, pgoff=A >> 12)
    k = make_kernel([stack], limits=MmLimits(stack_rlimit=0x1000))
    assert fault(k, stack, A, X86_FLAGS | FAULT_FLAG_WRITE) == VM_FAULT_SIGSEGV


def test_expand_stack_refuses_growth_into_abutting_vma_and_below_mmap_min_addr():
    # expand_stack L2323: prev->vm_end == address and not GROWSDOWN -> -ENOMEM;
    # expand_downwards: security_mmap_addr(address) -> -EPERM below mmap_min_addr.
    below = Vma(A - 0x2000, A - 0x1000, RW)
    stack = Vma(A, A + 0x1000, RW | VM_GROWSDOWN, pgoff=A >> 12)
    k = make_kernel([below, stack])
    assert k.mm.expand_stack(stack, A - 0x1000) == -12
    low = Vma(0x10000, 0x11000, RW | VM_GROWSDOWN, pgoff=0x10)
    k = make_kernel([low])
    assert k.mm.expand_stack(low, 0xF000) == -1


def test_expand_downwards_limited_by_vm_pgoff():
    # expand_downwards: grow > vma->vm_pgoff -> -ENOMEM.
    stack = Vma(A, A + 0x1000, RW | VM_GROWSDOWN, pgoff=1)
    k = make_kernel([stack])
    assert k.mm.expand_stack(stack, A - 0x2000) == -12
    assert k.mm.expand_stack(stack, A - 0x1000) == 0 and stack.start == A - 0x1000 and stack.pgoff == 0


def test_swap_entry_is_major_and_hwpoison_entry_is_hwpoison():
    # do_swap_page: swapin_readahead -> VM_FAULT_MAJOR (page locked for the read, so with
    # ALLOW_RETRY it is MAJOR|RETRY); is_hwpoison_entry -> VM_FAULT_HWPOISON.
    vma = Vma(A, A + 0x2000, RW, pgoff=A >> 12)
    k = make_kernel([vma], {A: Pte("swap"), A + 0x1000: Pte("hwpoison")})
    assert fault(k, vma, A, X86_FLAGS) == VM_FAULT_MAJOR | VM_FAULT_RETRY
    k.down_read()
    assert k.handle_mm_fault(vma, A, FAULT_FLAG_KILLABLE | FAULT_FLAG_TRIED | FAULT_FLAG_USER) == 0
    assert k.mm.ptes[A].present
    assert k.handle_mm_fault(vma, A + 0x1000, X86_FLAGS) == VM_FAULT_HWPOISON


def test_shared_file_write_fault_maps_writable():
    vma = Vma(A, A + 0x1000, RW | VM_SHARED, FileBacking(0x1000))
    k = make_kernel([vma])
    assert fault(k, vma, A, X86_FLAGS | FAULT_FLAG_WRITE) == 0
    assert k.mm.ptes[A].write


def test_exec_vma_maps_exec_pte():
    vma = Vma(A, A + 0x1000, VM_READ | VM_EXEC, pgoff=A >> 12)
    k = make_kernel([vma])
    fault(k, vma, A, X86_FLAGS)
    assert k.mm.ptes[A].exec


def test_injection_replaces_result_and_retry_drops_mmap_sem():
    vma = Vma(A, A + 0x1000, RW, pgoff=A >> 12)
    k = make_kernel([vma], inject=[VM_FAULT_OOM, VM_FAULT_RETRY | VM_FAULT_MAJOR, None])
    assert fault(k, vma, A, X86_FLAGS) == VM_FAULT_OOM
    assert A not in k.mm.ptes and k.mmap_sem.readers == 1
    assert k.handle_mm_fault(vma, A, X86_FLAGS) == VM_FAULT_RETRY | VM_FAULT_MAJOR
    assert k.mmap_sem.readers == 0
    k.down_read()
    assert k.handle_mm_fault(vma, A, X86_FLAGS) == 0 and A in k.mm.ptes


def test_injected_retry_without_allow_retry_is_dropped():
    # The core only returns RETRY under ALLOW_RETRY or a killable lock with a fatal signal.
    vma = Vma(A, A + 0x1000, RW, pgoff=A >> 12)
    k = make_kernel([vma], inject=[VM_FAULT_RETRY | VM_FAULT_MAJOR])
    assert fault(k, vma, A, FAULT_FLAG_KILLABLE | FAULT_FLAG_TRIED) == VM_FAULT_MAJOR


def test_handle_mm_fault_without_mmap_sem_is_a_kernel_bug():
    vma = Vma(A, A + 0x1000, RW)
    k = make_kernel([vma])
    with pytest.raises(KernelBug):
        k.handle_mm_fault(vma, A, X86_FLAGS)


def test_up_read_unbalanced_is_a_kernel_bug():
    k = make_kernel([])
    with pytest.raises(KernelBug):
        k.up_read()


def test_find_vma_returns_first_vma_ending_above():
    # find_vma L2027: a VMA above the address is returned (vm_start > addr).
    v1, v2 = Vma(A, A + 0x1000, RW), Vma(A + 0x3000, A + 0x4000, RW)
    k = make_kernel([v1, v2])
    assert k.mm.find_vma(A + 0x1000) is v2
    assert k.mm.find_vma(A + 0x4000) is None
    assert k.mm.find_vma(A - 1) is v1


def test_injected_fallback_is_dropped():
    # __handle_mm_fault L3218-3247: VM_FAULT_FALLBACK from the huge-page path falls back to a
    # small page; it never reaches the arch handler.
    from harness.kernel.constants import VM_FAULT_FALLBACK
    vma = Vma(A, A + 0x1000, RW, pgoff=A >> 12)
    k = make_kernel([vma], inject=[VM_FAULT_FALLBACK])
    assert fault(k, vma, A, X86_FLAGS) == 0 and A in k.mm.ptes


def test_injections_are_reduced_to_results_the_core_can_return():
    # filemap_fault()/do_swap_page() return RETRY with at most MAJOR; the hwpoison index (bits
    # 12-15) only travels with VM_FAULT_HWPOISON_LARGE; VM_FAULT_ACCESS (0x80) is the RFC's.
    from harness.kernel.memory import core_result
    from harness.kernel.constants import VM_FAULT_ACCESS, VM_FAULT_HWPOISON_LARGE
    assert core_result(VM_FAULT_RETRY | VM_FAULT_MAJOR | VM_FAULT_SIGBUS) == VM_FAULT_RETRY | VM_FAULT_MAJOR
    assert core_result(VM_FAULT_HWPOISON_LARGE | 0x3000) == VM_FAULT_HWPOISON_LARGE | 0x3000
    assert core_result(VM_FAULT_SIGBUS | 0x3000) == VM_FAULT_SIGBUS
    assert core_result(VM_FAULT_SIGSEGV | VM_FAULT_ACCESS | 0x10000) == VM_FAULT_SIGSEGV
    assert core_result(VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_MAJOR) == VM_FAULT_SIGBUS | VM_FAULT_MAJOR
    assert core_result(VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE | 0x3000) == VM_FAULT_HWPOISON
