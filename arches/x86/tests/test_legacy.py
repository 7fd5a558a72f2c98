"""The x86 legacy model against arch/x86/mm/fault.c v4.0, decision point by decision point.

Each test builds the pt_regs/error code by hand and asserts what the C does, citing its lines.
"""

from __future__ import annotations

import pytest

from arches.x86 import PARAMS_I386, PARAMS_X86_64, convert, legacy
from arches.x86.cpu import X86Fault
from harness.generic import fixed, rfc2015
from harness.kernel import FileBacking, Kernel, KernelConfig, MmStruct, Oops, Pte, Task, Vma
from harness.kernel.constants import (BUS_ADRERR, BUS_MCEERR_AR, SEGV_ACCERR, SEGV_MAPERR, SIGBUS,
                                      SIGSEGV, VM_EXEC, VM_FAULT_FALLBACK, VM_FAULT_HWPOISON,
                                      VM_FAULT_OOM, VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_GROWSDOWN,
                                      VM_READ, VM_WRITE)
from harness.kernel.kernel import KernelBug
from harness.kernel.mm import MmLimits

A = 0x10000000
UIP, KIP = 0x400000, 0xFFFFFFFF81000000
P = PARAMS_X86_64


def regs(error_code: int, cr2: int, *, user: bool = True, sp: int = 0x7FFFFFFFE000, ip: int | None = None,
         flags: int = 0x202, insn: bytes = b"\x8b\x00") -> X86Fault:
    ip = ip if ip is not None else (UIP if user else KIP)
    return X86Fault(pc=ip, insn=insn, user=user, error_code=error_code, cr2=cr2, ip=ip, sp=sp,
                    cs=0x33 if user else 0x10, flags=flags)


def kernel(vmas=(), ptes=None, *, fatal=False, atomic=False, no_mm=False, extable=False,
           sig_on_uaccess=False, inject=(), contended=False, rlimit=8 << 20) -> Kernel:
    mm = None if no_mm else MmStruct(sorted(vmas, key=lambda v: v.start), dict(ptes or {}),
                                     MmLimits(stack_rlimit=rlimit))
    return Kernel(mm, Task(fatal_signal=fatal, in_atomic=atomic, sig_on_uaccess_error=sig_on_uaccess),
                  KernelConfig(P.task_size_max), extable=frozenset({KIP}) if extable else frozenset(),
                  inject=tuple(inject), mmap_sem_contended=contended)


def handle(k: Kernel, r: X86Fault, p=P, smap=False) -> None:
    legacy.do_page_fault(k, p, r, smap)


def signals(k: Kernel) -> list[tuple[int, int, int]]:
    return [(s.signo, s.code, s.addr) for s in k.task.signals]


def test_user_read_no_vma_is_sigsegv_maperr():
    # L1190-1194: find_vma NULL -> bad_area -> __bad_area(SEGV_MAPERR) -> user: force_sig_info_fault.
    k = kernel()
    handle(k, regs(0x4, A))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]
    assert k.mmap_sem.readers == 0
    assert k.perf == {"PERF_COUNT_SW_PAGE_FAULTS": 1}  # L1152, counted before mmap_sem


def test_user_write_to_read_only_vma_is_accerr():
    # L1222-1226 + access_error L1004: PF_WRITE && !VM_WRITE -> bad_area_access_error (ACCERR).
    k = kernel([Vma(A, A + 0x1000, VM_READ)])
    handle(k, regs(0x6, A))
    assert signals(k) == [(SIGSEGV, SEGV_ACCERR, A)]


def test_read_protection_fault_is_accerr_even_on_readable_vma():
    # access_error L1011: `if (error_code & PF_PROT) return 1;` for any non-write.
    k = kernel([Vma(A, A + 0x1000, VM_READ | VM_WRITE | VM_EXEC)], {A: Pte(user=False)})
    handle(k, regs(0x5, A))
    assert signals(k) == [(SIGSEGV, SEGV_ACCERR, A)]


def test_exec_not_present_on_readable_non_exec_vma_is_accepted():
    # access_error: read/exec of a not-present page is OK if the VMA has any of R/W/X; v4.0 never
    # looks at VM_EXEC (L1015).
    k = kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)])
    handle(k, regs(0x14, A, ip=A))
    assert not k.task.signals and k.task.min_flt == 1


def test_stack_cushion_rule_is_user_only_and_word_sized():
    # L1201-1212: address + 65536 + 32*sizeof(long) < sp -> bad_area (x86_64 cushion 65792).
    stack = lambda: [Vma(A + 0x100000, A + 0x101000, VM_READ | VM_WRITE | VM_GROWSDOWN, pgoff=(A + 0x100000) >> 12)]
    addr = A + 0x100000 - 8
    k = kernel(stack())
    handle(k, regs(0x6, addr, sp=addr + 65792 + 1))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, addr)]
    k = kernel(stack())
    handle(k, regs(0x6, addr, sp=addr + 65792))
    assert not k.task.signals and k.task.min_flt == 1
    # Kernel-mode faults skip the rule (copy_to_user into the stack gap).
    k = kernel(stack(), extable=True)
    handle(k, regs(0x2, addr, user=False, sp=addr + 0x1000000))
    assert k.task.min_flt == 1 and not k.fixups


def test_i386_cushion_is_65664():
    stack = [Vma(0x40100000, 0x40101000, VM_READ | VM_WRITE | VM_GROWSDOWN, pgoff=0x40100)]
    addr = 0x40100000 - 4
    k = kernel(stack)
    handle(k, regs(0x6, addr, sp=addr + 65664 + 1), PARAMS_I386)
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, addr)]


def test_kernel_fault_with_extable_fixes_up_without_signal():
    # no_context L653: fixup_exception -> return (no signal unless sig_on_uaccess_error).
    k = kernel(extable=True)
    handle(k, regs(0x0, A, user=False))
    assert k.fixups == 1 and not k.task.signals


def test_kernel_fault_without_extable_oopses():
    # no_context: no fixup, not a prefetch -> __die("Oops") -> oops_end(SIGKILL).
    with pytest.raises(Oops):
        handle(kernel(), regs(0x0, A, user=False))


def test_sig_on_uaccess_error_delivers_no_context_signal():
    # no_context L669: sig_on_uaccess_error && signal -> force_sig_info_fault(signal, si_code).
    k = kernel(extable=True, sig_on_uaccess=True)
    handle(k, regs(0x0, A, user=False))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]


def test_fatal_signal_kernel_error_fixes_up_with_signal_zero():
    # mm_fault_error L877: fatal && !PF_USER -> no_context(..., 0, 0): fixup, and no signal even
    # with sig_on_uaccess_error.
    k = kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], fatal=True, extable=True,
               sig_on_uaccess=True, inject=[VM_FAULT_OOM])
    handle(k, regs(0x0, A, user=False))
    assert k.fixups == 1 and not k.task.signals


def test_kernel_oom_is_no_context_sigsegv_maperr():
    # mm_fault_error L884: OOM, kernel -> no_context(SIGSEGV, SEGV_MAPERR).
    k = kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], extable=True, sig_on_uaccess=True,
               inject=[VM_FAULT_OOM])
    handle(k, regs(0x0, A, user=False))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]


def test_user_oom_calls_oom_killer_and_returns_without_signal_or_accounting():
    k = kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], inject=[VM_FAULT_OOM])
    handle(k, regs(0x4, A))
    assert not k.task.signals and (k.task.maj_flt, k.task.min_flt) == (0, 0)
    assert any(e.what == "pagefault_out_of_memory" for e in k.trace)


def test_sigbus_and_hwpoison():
    # do_sigbus L842-872: BUS_ADRERR; HWPOISON -> BUS_MCEERR_AR with lsb PAGE_SHIFT (L181).
    k = kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], inject=[VM_FAULT_SIGBUS])
    handle(k, regs(0x4, A))
    assert signals(k) == [(SIGBUS, BUS_ADRERR, A)]
    k = kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], inject=[VM_FAULT_HWPOISON])
    handle(k, regs(0x4, A))
    assert signals(k) == [(SIGBUS, BUS_MCEERR_AR, A)] and k.task.signals[0].addr_lsb == 12


def test_file_beyond_eof_is_sigbus_adrerr():
    k = kernel([Vma(A, A + 0x2000, VM_READ, FileBacking(0x1000))])
    handle(k, regs(0x4, A + 0x1000))
    assert signals(k) == [(SIGBUS, BUS_ADRERR, A + 0x1000)]


def test_fallback_only_error_is_bug():
    # mm_fault_error L904: no known error bit -> BUG(). (handle_mm_fault never returns FALLBACK,
    # so the branch is reached directly.)
    with pytest.raises(KernelBug):
        legacy.mm_fault_error(kernel(), P, regs(0x4, A), 0x4, A, VM_FAULT_FALLBACK)


def test_retry_with_fatal_signal_user_returns_silently_kernel_no_context_sigbus():
    # L1242-1258: RETRY + fatal: user -> return; kernel -> no_context(SIGBUS, BUS_ADRERR).
    vma = lambda: [Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)]
    k = kernel(vma(), fatal=True, inject=[VM_FAULT_RETRY])
    handle(k, regs(0x4, A))
    assert not k.task.signals and k.mmap_sem.readers == 0 and k.task.min_flt == 0
    k = kernel(vma(), fatal=True, inject=[VM_FAULT_RETRY], extable=True, sig_on_uaccess=True)
    handle(k, regs(0x0, A, user=False))
    assert signals(k) == [(SIGBUS, BUS_ADRERR, A)]


def test_retry_once_counts_once():
    # L1244-1249 + L1270: the second attempt has TRIED, and accounting happens once.
    k = kernel([Vma(A, A + 0x1000, VM_READ, FileBacking(0x1000, "absent"))])
    handle(k, regs(0x4, A))
    assert (k.task.maj_flt, k.task.min_flt) == (1, 0)
    assert [hex(c.flags) for c in k.mm_calls] == ["0x54", "0x70"]  # ALLOW_RETRY|KILLABLE|USER, then KILLABLE|TRIED|USER


def test_rsvd_on_user_address_is_pgtable_bad_oops_even_from_user():
    # L1119-1120: PF_RSVD -> pgtable_bad -> oops.
    with pytest.raises(Oops):
        handle(kernel([Vma(A, A + 0x1000, VM_READ)]), regs(0xD, A))


def test_smap_violation_precedes_vma_lookup():
    # L1122-1125: SMAP on, supervisor access, AC clear -> bad_area_nosemaphore (no find_vma).
    k = kernel([Vma(A, A + 0x1000, VM_READ)], extable=True)
    handle(k, regs(0x0, A, user=False), smap=True)
    assert k.fixups == 1 and not any(e.what == "find_vma" for e in k.trace)
    # AC set in kernel mode: not a violation.
    k = kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], extable=True)
    handle(k, regs(0x0, A, user=False, flags=0x40202), smap=True)
    assert k.task.min_flt == 1


def test_in_atomic_is_bad_area_nosemaphore_before_the_lock():
    # L1131-1134.
    k = kernel([Vma(A, A + 0x1000, VM_READ)], atomic=True)
    handle(k, regs(0x4, A))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)] and not any(e.what == "down_read_trylock" for e in k.trace)


def test_kernel_address_from_user_is_maperr_and_skips_vma():
    # L1090-1113: fault_in_kernel_space -> bad_area_nosemaphore; user branch ORs PF_PROT (L791).
    k = kernel()
    handle(k, regs(0x4, P.task_size_max + 0x1000))
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, P.task_size_max + 0x1000)]
    assert k.task.thread["error_code"] == 0x5


def test_prefetch_is_swallowed():
    # is_prefetch L134: `0f 18 /1` (prefetcht0) -> the fault is ignored (user bad area).
    k = kernel()
    handle(k, regs(0x4, A, insn=b"\x0f\x18\x08"))
    assert not k.task.signals


def test_trylock_failure_kernel_without_extable_oopses():
    # L1173-1178: trylock fails, kernel mode, ip not in exception tables -> bad_area_nosemaphore
    # -> no_context -> no fixup -> oops.
    with pytest.raises(Oops):
        handle(kernel([Vma(A, A + 0x1000, VM_READ)], contended=True), regs(0x0, A, user=False))


# -- the conversion, on the same inputs -----------------------------------------------------------

def converted(k, r, variant, finish, smap=False):
    convert.converted_do_page_fault(k, P, r, smap, variant.generic_page_fault, finish)


def test_rfc_conversion_swaps_maperr_and_accerr():
    # RFC x86 hunk: `(fault & VM_FAULT_ACCESS) ? SEGV_MAPERR : SEGV_ACCERR`.
    k = kernel()
    converted(k, regs(0x4, A), rfc2015, convert.finish_rfc2015)
    assert signals(k) == [(SIGSEGV, SEGV_ACCERR, A)]
    k = kernel()
    converted(k, regs(0x4, A), fixed, convert.finish_fixed)
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, A)]


def test_rfc_fatal_signal_kernel_error_raises_sigbus_through_sig_on_uaccess_error():
    mk = lambda: kernel([Vma(A, A + 0x1000, VM_READ, pgoff=A >> 12)], fatal=True, extable=True,
                        sig_on_uaccess=True, inject=[VM_FAULT_OOM])
    k = mk()
    converted(k, regs(0x0, A, user=False), rfc2015, convert.finish_rfc2015)
    assert signals(k) == [(SIGBUS, BUS_ADRERR, A)]
    k = mk()
    converted(k, regs(0x0, A, user=False), fixed, convert.finish_fixed)
    assert not k.task.signals and k.fixups == 1


def test_exec_bit_of_vma_is_irrelevant_to_x86_conversion():
    # The RFC's x86 conversion never sets FAULT_FLAG_EXEC, so the exec branch cannot fire on x86.
    k = kernel([Vma(A, A + 0x1000, VM_READ | VM_EXEC, pgoff=A >> 12)])
    converted(k, regs(0x14, A, ip=A), rfc2015, convert.finish_rfc2015)
    assert not k.task.signals and k.task.min_flt == 1


# -- i386 only: the F00F workaround and vm86 -------------------------------------------------------

P32 = PARAMS_I386


def kernel32(**kw) -> Kernel:
    k = kernel(**kw)
    k.features["f00f"] = True
    return k


def test_f00f_fault_on_idt_entry_6_is_invalid_op():
    # is_f00f_bug L557-575: (address - idt) >> 3 == 6 -> do_invalid_op; traps.c do_trap_no_signal:
    # kernel regs -> fixup_exception, else die("invalid opcode") (no SIGSEGV, even with
    # sig_on_uaccess_error, since no_context is not reached).
    addr = P32.f00f_idt + 6 * 8 + 3
    k = kernel32(extable=True, sig_on_uaccess=True)
    handle(k, regs(0x2, addr, user=False), P32)
    assert k.fixups == 1 and not k.task.signals
    with pytest.raises(Oops, match="invalid opcode"):
        handle(kernel32(), regs(0x2, addr, user=False), P32)


def test_f00f_other_idt_entries_and_cpus_without_the_bug_take_no_context():
    k = kernel32(extable=True, sig_on_uaccess=True)
    handle(k, regs(0x2, P32.f00f_idt + 7 * 8, user=False), P32)
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, P32.f00f_idt + 7 * 8)]
    k = kernel(extable=True, sig_on_uaccess=True)  # no X86_BUG_F00F
    handle(k, regs(0x2, P32.f00f_idt + 6 * 8, user=False), P32)
    assert signals(k) == [(SIGSEGV, SEGV_MAPERR, P32.f00f_idt + 6 * 8)]


def test_check_v8086_mode_marks_screen_memory_only_in_vm86():
    # L299-311: v8086_mode(regs) and (address - 0xA0000) >> PAGE_SHIFT < 32 -> screen_bitmap bit.
    vma = lambda: [Vma(0xA0000, 0xC0000, VM_READ | VM_WRITE, pgoff=0xA0)]
    k = kernel(vma())
    handle(k, regs(0x6, 0xA3000, flags=0x20202, sp=0xB0000), P32)
    assert k.task.thread["screen_bitmap"] == 1 << 3 and k.task.min_flt == 1
    k = kernel(vma())
    handle(k, regs(0x6, 0xA3000, sp=0xB0000), P32)
    assert "screen_bitmap" not in k.task.thread
