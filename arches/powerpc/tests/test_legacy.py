"""The v4.0 arch/powerpc/mm/fault.c model, decision point by decision point, on hand-built inputs."""

import json
from pathlib import Path

import pytest

from arches.powerpc import PARAMS_PPC32, PARAMS_PPC64, legacy
from arches.powerpc.cpu import PpcFault
from harness.diff import Differ
from harness.generic import load_variant
from harness.kernel import Kernel, KernelConfig, MmStruct, Oops, Pte, Task, Vma
from harness.kernel.constants import (BUS_ADRERR, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGKILL, SIGSEGV,
                                      VM_EXEC, VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_RETRY,
                                      VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_GROWSDOWN, VM_READ, VM_WRITE)
from harness.scenario import Scenario

P64 = PARAMS_PPC64
STACK_END = 0x3FFF00200000
STACK_START = 0x3FFF00100000
USER_NIP = 0x10000008


def world(vmas=(), ptes=None, *, task=None, inject=(), features=None, no_mm=False, extable=()):
    mm = None if no_mm else MmStruct([Vma(s, e, f, None, s >> 12) for s, e, f in vmas], dict(ptes or {}))
    return Kernel(mm, task or Task(), KernelConfig(P64.task_size), inject=tuple(inject),
                  features=features or {}, extable=frozenset(extable))


def dsi(addr, dsisr, *, user=True, gpr1=STACK_END, insn=b"\x90\x83\x00\x00", nip=USER_NIP):
    return PpcFault(pc=nip, insn=insn, user=user, trap=0x300, dsisr=dsisr, dar=addr, srr1=0, nip=nip,
                    gpr1=gpr1, msr=0)


def isi(addr, srr1, *, user=True):
    return PpcFault(pc=addr, insn=b"", user=user, trap=0x400, dsisr=0, dar=addr, srr1=srr1, nip=addr,
                    gpr1=STACK_END, msr=0)


def test_store_updates_sp_decodes_the_instruction():
    # L82-105: rA must be r1; stwu(37) stbu(39) sthu(45) stfsu(53) stfdu(55); 62 with XO=1; 31/181,183,...
    assert legacy.store_updates_sp(dsi(0, 0, insn=bytes.fromhex("94218000")))        # stwu r1,-32768(r1)
    assert legacy.store_updates_sp(dsi(0, 0, insn=bytes.fromhex("f8218001")))        # stdu r1
    assert not legacy.store_updates_sp(dsi(0, 0, insn=bytes.fromhex("f8210000")))    # std r1,0(r1)
    assert legacy.store_updates_sp(dsi(0, 0, insn=bytes.fromhex("7c21296e")))        # stwux r1,r1,r5
    assert not legacy.store_updates_sp(dsi(0, 0, insn=bytes.fromhex("94838000")))    # stwu r4,..(r3)
    assert not legacy.store_updates_sp(dsi(0, 0, insn=b""))                          # get_user failed


def test_user_far_below_r1_is_maperr_unless_store_updates_sp():
    vmas = [(STACK_START, STACK_END, VM_READ | VM_WRITE | VM_GROWSDOWN)]
    addr = STACK_START - 0x1000   # more than 1 MiB below vm_end (L349) and > 2048 below r1 (L367)
    k = world(vmas)
    legacy.handle_page_fault(k, P64, dsi(addr, 0x42000000))
    assert [str(s) for s in k.task.signals] == [f"SIGSEGV SEGV_MAPERR addr={addr:#x}"]
    k = world(vmas)
    legacy.handle_page_fault(k, P64, dsi(addr, 0x42000000, insn=bytes.fromhex("7c21296e")))
    # expand_stack to the page, then check_stack_guard_page keeps one more page below it
    assert not k.task.signals and k.mm.vmas[0].start == (addr & ~0xFFF) - 0x1000 and k.task.min_flt == 1


def test_kernel_mode_far_below_user_r1_returns_sigsegv_to_bad_page_fault():
    # L349-369 apply in kernel mode too; rc = SIGSEGV -> bad_page_fault -> extable fixup (L513).
    vmas = [(STACK_START, STACK_END, VM_READ | VM_WRITE | VM_GROWSDOWN)]
    k = world(vmas, extable={0xC000000000008000})
    rc = legacy.do_page_fault(k, P64, dsi(STACK_START - 0x1000, 0x42000000, user=False, nip=0xC000000000008000),
                              STACK_START - 0x1000, 0x42000000)
    assert rc == SIGSEGV and k.mmap_sem.readers == 0


def test_read_protection_fault_goes_on_to_handle_mm_fault():
    # L420-424: only a WARN for DSISR_PROTFAULT on a read; handle_mm_fault is called.
    k = world([(0x20000000, 0x20010000, VM_READ)], {0x20000000: Pte("present", user=True)})
    legacy.handle_page_fault(k, P64, dsi(0x20000000, 0x08000000))
    assert len(k.mm_calls) == 1 and not k.task.signals


@pytest.mark.parametrize("p,flags,ok", [
    (PARAMS_PPC64, VM_READ, False), (PARAMS_PPC64, VM_READ | VM_EXEC, True),
    (PARAMS_PPC32, VM_READ, True), (PARAMS_PPC32, VM_WRITE, True), (PARAMS_PPC32, 0, False)])
def test_exec_rule_depends_on_noexecute(p, flags, ok):
    # L402-405: !(VM_EXEC) && (CPU_FTR_NOEXECUTE || !(VM_READ|VM_WRITE)) -> bad_area (ACCERR)
    k = Kernel(MmStruct([Vma(0x20000000, 0x20010000, flags, None, 0x20000)], {}), Task(),
               KernelConfig(p.task_size))
    legacy.handle_page_fault(k, p, isi(0x20000000, 0x40000000))
    assert bool(k.task.signals) != ok
    if not ok:
        assert k.task.signals[0].code == SEGV_ACCERR


def test_vm_fault_sigsegv_is_accerr_and_beats_fatal_signal():
    # L433: VM_FAULT_SIGSEGV -> bad_area with code = SEGV_ACCERR (set at L374), before mm_fault_error.
    k = world([(0x20000000, 0x20010000, VM_READ | VM_WRITE)], task=Task(fatal_signal=True),
              inject=[VM_FAULT_SIGSEGV])
    legacy.handle_page_fault(k, P64, dsi(0x20000000, 0x42000000))
    assert k.task.signals[0].signo == SIGSEGV and k.task.signals[0].code == SEGV_ACCERR


def test_fatal_signal_user_is_silent_kernel_is_sigkill():
    # L155-166
    k = world([(0x20000000, 0x20010000, VM_READ | VM_WRITE)], task=Task(fatal_signal=True), inject=[VM_FAULT_SIGBUS])
    legacy.handle_page_fault(k, P64, dsi(0x20000000, 0x42000000))
    assert not k.task.signals and k.mmap_sem.readers == 0
    k = world([(0x20000000, 0x20010000, VM_READ | VM_WRITE)], task=Task(fatal_signal=True), inject=[VM_FAULT_SIGBUS])
    rc = legacy.do_page_fault(k, P64, dsi(0x20000000, 0x42000000, user=False), 0x20000000, 0x42000000)
    assert rc == SIGKILL


def test_oom_and_sigbus():
    # L174-188: kernel OOM -> SIGKILL; user SIGBUS -> BUS_ADRERR at the address.
    k = world([(0x20000000, 0x20010000, VM_READ | VM_WRITE)], inject=[VM_FAULT_OOM])
    assert legacy.do_page_fault(k, P64, dsi(0x20000000, 0x42000000, user=False), 0x20000000, 0x42000000) == SIGKILL
    k = world([(0x20000000, 0x20010000, VM_READ | VM_WRITE)], inject=[VM_FAULT_SIGBUS])
    legacy.handle_page_fault(k, P64, dsi(0x20000008, 0x40000000))
    assert (k.task.signals[0].signo, k.task.signals[0].code, k.task.signals[0].addr) == (SIGBUS, BUS_ADRERR, 0x20000008)


def test_accounting_first_attempt_only_and_cmo():
    # L447-475: the first attempt is accounted with its own MAJOR bit; the retry is not accounted.
    k = world([(0x20000000, 0x20010000, VM_READ | VM_WRITE)], inject=[VM_FAULT_RETRY | 0, VM_FAULT_MAJOR],
              features={"cmo": True})
    legacy.handle_page_fault(k, P64, dsi(0x20000000, 0x40000000))
    assert (k.task.maj_flt, k.task.min_flt) == (0, 1) and len(k.mm_calls) == 2
    k = world([(0x20000000, 0x20010000, VM_READ | VM_WRITE)], inject=[VM_FAULT_MAJOR], features={"cmo": True})
    legacy.handle_page_fault(k, P64, dsi(0x20000000, 0x40000000))
    assert k.task.maj_flt == 1 and dict(k.perf.items())[legacy.CMO_COUNTER] == 1  # 1 << PAGE_FACTOR, 4K pages


def test_kernel_address_and_user_atomic():
    k = world([])
    assert legacy.do_page_fault(k, P64, dsi(0xC000000000100000, 0x40000000, user=False),
                                0xC000000000100000, 0x40000000) == SIGSEGV  # L257
    k = world([], task=Task(in_atomic=True))
    with pytest.raises(Oops):  # L286: die("Weird page fault")
        legacy.handle_page_fault(k, P64, dsi(0x20000000, 0x40000000))


def test_isi_error_code_masking():
    # exceptions-64s.S L1026 (& 0x58200000), fault.c L230 (& 0x48200000): N_OR_G is dropped.
    f = isi(0x20000000, 0xB00000001000D032)
    assert legacy.entry_error_code(P64, f) == 0x10000000
    f32 = isi(0x20000000, 0x1000D032)
    assert legacy.entry_error_code(PARAMS_PPC32, f32) == 0x1000D032


CRASHES = Path(__file__).resolve().parents[3] / "corpus" / "crashes"


@pytest.mark.parametrize("path", sorted(CRASHES.glob("ppc*/*.json")), ids=lambda p: p.stem)
def test_crash_corpus(path):
    data = json.loads(path.read_text())
    assert data.get("comment")
    s = Scenario.from_json(data)
    r1 = Differ(load_variant("rfc2015")).run(s)
    r2 = Differ(load_variant("rfc2015")).run(s)
    assert r1.divergence is not None and r1.divergence.signature == r2.divergence.signature
    assert Differ(load_variant("fixed")).run(s).divergence is None


def test_crash_corpus_present():
    assert len(list(CRASHES.glob("ppc64/*.json"))) >= 3 and len(list(CRASHES.glob("ppc32/*.json"))) >= 2


SEEDS = Path(__file__).resolve().parents[3] / "corpus" / "seeds"


@pytest.mark.parametrize("path", sorted(SEEDS.glob("ppc*/*.json")), ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_seeds_clean_under_fixed(path):
    s = Scenario.from_json(json.loads(path.read_text()))
    assert Differ(load_variant("fixed")).run(s).divergence is None
