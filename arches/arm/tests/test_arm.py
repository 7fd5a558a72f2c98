"""arm: catalogue encodings, NativeFault by hand from the ARMv7 ARM, the v4.0 legacy model
decision by decision, no phantom faults, and the crash corpus."""

from __future__ import annotations

import json
from pathlib import Path

import capstone
import pytest

from harness.arch import CpuRun
from harness.generic import load_variant
from harness.diff import Differ
from harness.kernel import Kernel, KernelConfig, MmStruct, Pte, Task, Vma
from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_KILLABLE,
                                      FAULT_FLAG_TRIED, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                                      SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV, VM_EXEC,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_GROWSDOWN, VM_READ,
                                      VM_WRITE)
from harness.kernel.kernel import Oops
from harness.kernel.mm import FileBacking
from harness.scenario import Scenario

from arches.arm import legacy
from arches.arm.cpu import CATALOGUE, LAYOUT, ArmCpu, ArmFault

CRASHES = Path(__file__).resolve().parents[3] / "corpus" / "crashes" / "arm"

EXPECTED_ASM = {
    "ldr": ["ldr r1, [r0]"], "str": ["str r1, [r0]"], "ldrb": ["ldrb r1, [r0]"],
    "strb": ["strb r1, [r0]"], "ldrh": ["ldrh r1, [r0]"], "strh": ["strh r1, [r0]"],
    "ldrd": ["ldrd r2, r3, [r0]"], "strd": ["strd r2, r3, [r0]"], "ldm": ["ldm r0, {r1, r2}"],
    "push": ["push {r1, r2}"], "ldrex": ["ldrex r1, [r0]"],
    "strex": ["ldrex r1, [r0]", "strex r2, r1, [r0]"], "swp": ["swp r1, r2, [r0]"],
    "bx": ["bx r0"], "blx": ["blx r0"], "t_ldr": ["ldr r1, [r0]"], "t_str": ["str r1, [r0]"],
    "t_ldrb": ["ldrb r1, [r0]"], "t_strb": ["strb r1, [r0]"], "t_ldrh": ["ldrh r1, [r0]"],
    "t_strh": ["strh r1, [r0]"], "t_ldrsb": ["ldrsb r1, [r0, r2]"], "t_push": ["push {r1, r2}"],
    "t_ldr_w": ["ldr.w r1, [r0]"], "t_str_w": ["str.w r1, [r0]"], "t_ldrex": ["ldrex r1, [r0]"],
    "t_strex": ["ldrex r1, [r0]", "strex r2, r1, [r0]"], "t_bx": ["bx r0"],
}


@pytest.fixture(scope="module")
def cpu() -> ArmCpu:
    return ArmCpu()


def test_catalogue_disassembles():
    assert set(EXPECTED_ASM) == set(CATALOGUE)
    for name, insn in CATALOGUE.items():
        md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB if insn.thumb else capstone.CS_MODE_ARM)
        got = [f"{i.mnemonic} {i.op_str}" for i in md.disasm(insn.encoding, 0)]
        assert got == EXPECTED_ASM[name], name
        assert sum(i.size for i in md.disasm(insn.encoding, 0)) == len(insn.encoding)


# -- NativeFault, by hand --------------------------------------------------------------------
# ARMv7 ARM B3.13.3 (short-descriptor FS codes): 0b00101 translation fault, first level;
# 0b00111 translation fault, second level; 0b01101 permission fault, first level (section);
# 0b01111 permission fault, second level (page). B4.1.52 DFSR: WnR = bit 11 (1 = write),
# Domain = bits 7:4. B4.1.96 IFSR: FS only. Linux v4.0 puts user tables in domain 1
# (DOMAIN_USER), kernel sections in domain 0. SPSR mode bits: USR 0x10, SVC 0x13; T = bit 5.
PAGE = 0x20000
TEXT_PTE = {LAYOUT.user_text: Pte("present", write=False, user=True, exec=True, young=True)}
RO = Pte("present", write=False, user=True, exec=False, dirty=False, young=True)
CLEAN_RW = Pte("present", write=True, user=True, exec=False, dirty=False, young=True)
OLD = Pte("present", write=True, user=True, exec=True, dirty=True, young=False)
KONLY = Pte("present", write=True, user=False, exec=True, dirty=True, young=True)

DATA_CASES = [
    # (insn, mode, pte at PAGE, addr, expected DFSR, expected DFAR)
    ("ldr", "user", None, PAGE, 0x017, PAGE),          # L2 translation (table exists: text pmd), domain 1
    ("str", "user", None, PAGE, 0x817, PAGE),          # + WnR
    ("strb", "kernel", RO, PAGE, 0x81F, PAGE),         # page permission, write, APX=1
    ("t_str", "user", CLEAN_RW, PAGE, 0x81F, PAGE),    # clean page: APX=1 (software dirty bit)
    ("t_ldrh", "user", OLD, PAGE, 0x017, PAGE),        # !young -> hw entry 0 -> translation
    ("t_ldr_w", "user", KONLY, PAGE, 0x01F, PAGE),     # AP1=0: user read -> permission, no WnR
    ("push", "user", RO, PAGE + 8, 0x81F, PAGE),       # push {r1,r2} with sp = PAGE+8 stores at PAGE
    ("t_push", "kernel", None, PAGE + 8, 0x817, PAGE),
    ("strex", "user", RO, PAGE, 0x81F, PAGE),          # ldrex reads fine, strex store faults
    ("swp", "user", RO, PAGE, 0x81F, PAGE),            # read succeeds, the write faults
    ("ldrd", "user", None, 0x00400000, 0x005, 0x00400000),  # no pte in the 2 MiB pmd: L1 translation, domain 0
    ("ldr", "user", None, 0xC0008000, 0x00D, 0xC0008000),   # kernel section, AP=01: section permission, domain 0
    ("str", "user", None, 0xC0400000, 0x805, 0xC0400000),   # above TASK_SIZE, unmapped: L1 translation + WnR
]


@pytest.mark.parametrize("name,mode,pte,addr,dfsr,dfar", DATA_CASES)
def test_data_abort_by_hand(cpu, name, mode, pte, addr, dfsr, dfar):
    ptes = dict(TEXT_PTE)
    if pte is not None:
        ptes[PAGE] = pte
    sp = addr if CATALOGUE[name].sp_access else 0xBEFF0000
    f = cpu.execute(CpuRun(name, mode, addr, sp, ptes, {}))
    assert isinstance(f, ArmFault)
    assert (f.fsr, f.far, f.prefetch) == (dfsr, dfar, False)
    assert f.user == (mode == "user")
    mode_bits = 0x10 if mode == "user" else 0x13
    assert f.cpsr & 0x1F == mode_bits
    assert bool(f.cpsr & 0x20) == CATALOGUE[name].thumb


def test_data_abort_ev4_has_no_wnr(cpu):
    # An ARMv4 FSR has no WnR: bit 11 reads 0 even for a store; the domain/FS stay.
    f = cpu.execute(CpuRun("str", "user", PAGE, 0xBEFF0000, dict(TEXT_PTE), {"abort_ev4": True}))
    assert f.fsr == 0x017


FETCH_CASES = [
    ("bx", "user", None, 0x007, False),                # L2 translation; IFSR has no domain
    ("bx", "user", CLEAN_RW, 0x00F, False),            # XN: page permission
    ("blx", "kernel", CLEAN_RW, 0x00F, False),
    ("t_bx", "user", RO, 0x00F, True),                 # target state Thumb
]


@pytest.mark.parametrize("name,mode,pte,ifsr,thumb", FETCH_CASES)
def test_prefetch_abort_by_hand(cpu, name, mode, pte, ifsr, thumb):
    ptes = dict(TEXT_PTE)
    if pte is not None:
        ptes[PAGE] = pte
    f = cpu.execute(CpuRun(name, mode, PAGE, 0xBEFF0000, ptes, {}))
    assert (f.fsr, f.far, f.pc, f.prefetch) == (ifsr, PAGE, PAGE, True)
    assert bool(f.cpsr & 0x20) == thumb


def test_permitted_access_completes(cpu):
    rw = Pte("present", write=True, user=True, exec=True, dirty=True, young=True)
    for name, insn in CATALOGUE.items():
        for mode in insn.modes:
            ptes = dict(TEXT_PTE)
            ptes[PAGE] = rw
            ptes[PAGE - 0x1000] = rw
            sp = PAGE + 8 if insn.sp_access else 0xBEFF0000
            assert cpu.execute(CpuRun(name, mode, PAGE, sp, ptes, {})) is None, (name, mode)
    # kernel mode may touch the kernel section; user mode reads of the vectors page are fine
    assert cpu.execute(CpuRun("ldr", "kernel", 0xC0008000, 0xBEFF0000, dict(TEXT_PTE), {})) is None
    assert cpu.execute(CpuRun("ldr", "user", 0xFFFF0000, 0xBEFF0000, dict(TEXT_PTE), {})) is None


# -- legacy model against v4.0 arch/arm/mm/fault.c --------------------------------------------

def kernel(vmas, ptes=None, **task):
    mm = MmStruct(vmas, dict(ptes or {}))
    extable = task.pop("extable", frozenset())
    contended = task.pop("contended", False)
    inject = task.pop("inject", ())
    features = task.pop("features", {})
    return Kernel(mm, Task(**task), KernelConfig(LAYOUT.task_size), extable=extable,
                  mmap_sem_contended=contended, inject=inject, features=features)


def fault(fsr, far, user=True, prefetch=False, pc=0x10000, insn=b"\0\0\0\0", cpsr=None):
    return ArmFault(pc=pc, insn=insn, user=user, fsr=fsr, far=far,
                    cpsr=cpsr if cpsr is not None else (0x10 if user else 0x13), sp=0, prefetch=prefetch)


def test_legacy_write_to_readonly_vma_is_accerr():
    # L214-219: FSR_WRITE -> mask VM_WRITE; L384: fault == BADACCESS -> SEGV_ACCERR; L178 trap_no 14.
    k = kernel([Vma(0x20000, 0x21000, VM_READ)])
    legacy.handle_abort(k, fault(0x817, 0x20010))
    assert [(s.signo, s.code, s.addr) for s in k.task.signals] == [(SIGSEGV, SEGV_ACCERR, 0x20010)]
    assert k.task.thread["trap_no"] == 14 and k.task.thread["error_code"] == 0x817
    assert k.mm_calls == []
    # L326-336: perf PAGE_FAULTS and min_flt even for a bad access (BADACCESS is not VM_FAULT_ERROR)
    assert k.perf == {"PERF_COUNT_SW_PAGE_FAULTS": 1, "PERF_COUNT_SW_PAGE_FAULTS_MIN": 1}
    assert k.task.min_flt == 1


def test_legacy_prefetch_needs_vm_exec_only():
    # do_PrefetchAbort ORs FSR_LNX_PF (L583); access_error mask = VM_EXEC (L216-217).
    k = kernel([Vma(0x20000, 0x21000, VM_READ | VM_WRITE)])
    legacy.handle_abort(k, fault(0x7, 0x20000, prefetch=True, pc=0x20000))
    assert [(s.signo, s.code) for s in k.task.signals] == [(SIGSEGV, SEGV_ACCERR)]
    k = kernel([Vma(0x20000, 0x21000, VM_EXEC)])
    legacy.handle_abort(k, fault(0x7, 0x20000, prefetch=True, pc=0x20000))
    assert k.task.signals == [] and len(k.mm_calls) == 1


def test_legacy_handle_mm_fault_gets_page_masked_address_and_flags():
    # L246: handle_mm_fault(addr & PAGE_MASK); L263/282-285 flags.
    k = kernel([Vma(0x20000, 0x21000, VM_READ | VM_WRITE)])
    legacy.handle_abort(k, fault(0x817, 0x20abc))
    c = k.mm_calls[0]
    assert c.address == 0x20000
    assert c.flags == FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_USER | FAULT_FLAG_WRITE


def test_legacy_stack_floor_and_no_sp_rule():
    # L249-251: GROWSDOWN and addr >= FIRST_USER_ADDRESS (0x2000); no sp test at all.
    k = kernel([Vma(0x40000, 0x41000, VM_READ | VM_WRITE | VM_GROWSDOWN, None, 0x40)])
    legacy.handle_abort(k, fault(0x817, 0x30000))   # far below any sp: still grows
    # expand_stack to 0x30000, then check_stack_guard_page (mm/memory.c L2532) keeps one more page
    assert k.task.signals == [] and k.mm.vmas[0].start == 0x2F000
    k = kernel([Vma(0x2000, 0x3000, VM_READ | VM_WRITE | VM_GROWSDOWN, None, 0x2)], extable=frozenset({0x10000}))
    legacy.handle_abort(k, fault(0x17, 0x1800, user=False))
    assert k.fixups == 1 and k.mm.vmas[0].start == 0x2000
    assert "expand_stack" not in [e.what for e in k.trace]


def test_legacy_section_permission_is_maperr():
    # fsr-2level.c FS 13 -> do_sect_fault -> do_bad_area: SEGV_MAPERR (L196), not the table's ACCERR.
    k = kernel([])
    legacy.handle_abort(k, fault(0x00D, 0xC0008000))
    assert [(s.signo, s.code) for s in k.task.signals] == [(SIGSEGV, SEGV_MAPERR)]
    assert k.perf == {}


def test_legacy_translation_above_task_size_kernel_oops():
    # do_translation_fault: addr >= TASK_SIZE, kernel, pgd_none(*pgd_k) -> do_bad_area -> oops (L150).
    k = kernel([])
    with pytest.raises(Oops):
        legacy.handle_abort(k, fault(0x005, 0xC0400000, user=False))


def test_legacy_do_bad_domain_fault_user_signal():
    # FS 9 section domain fault: do_bad -> arm_notify_die with the table's SIGSEGV/SEGV_ACCERR.
    k = kernel([])
    legacy.handle_abort(k, fault(0x009, 0x20000))
    assert [(s.signo, s.code) for s in k.task.signals] == [(SIGSEGV, SEGV_ACCERR)]


def test_legacy_sigbus_and_retry_accounting():
    # L371-377 SIGBUS/BUS_ADRERR; L327: VM_FAULT_ERROR -> no maj/min.
    k = kernel([Vma(0x20000, 0x21000, VM_READ)], inject=(VM_FAULT_SIGBUS,))
    legacy.handle_abort(k, fault(0x017, 0x20000))
    assert [(s.signo, s.code) for s in k.task.signals] == [(SIGBUS, BUS_ADRERR)]
    assert k.task.min_flt == 0 and k.perf == {"PERF_COUNT_SW_PAGE_FAULTS": 1}
    # L337-343: RETRY on pass 1 counts min_flt, sets TRIED, retries; pass 2 counts perf only.
    k = kernel([Vma(0x20000, 0x21000, VM_READ, FileBacking(0x1000, "locked"))])
    legacy.handle_abort(k, fault(0x017, 0x20000))
    assert [c.flags & (FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_TRIED) for c in k.mm_calls] == \
        [FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_TRIED]
    assert k.task.min_flt == 1 and k.perf["PERF_COUNT_SW_PAGE_FAULTS"] == 2
    assert k.mmap_sem.readers == 0


def test_legacy_retry_fatal_signal_returns_in_kernel():
    # L317-318: RETRY with a fatal signal returns 0, even in kernel mode, with no perf event.
    k = kernel([Vma(0x20000, 0x21000, VM_READ, FileBacking(0x1000, "locked"))], fatal_signal=True,
               extable=frozenset({0x10000}))
    legacy.handle_abort(k, fault(0x017, 0x20000, user=False))
    assert k.fixups == 0 and k.task.signals == [] and k.perf == {}


def test_legacy_trylock_fail_kernel_without_extable_oopses():
    # L292-294
    k = kernel([Vma(0x20000, 0x21000, VM_READ)], contended=True)
    with pytest.raises(Oops):
        legacy.handle_abort(k, fault(0x017, 0x20000, user=False))
    assert k.mm_calls == []


def test_abort_ev4_decodes_write_bit():
    # abort-ev4.S: clear bits 11/10, set 11 iff instruction bit 20 (L) is 0.
    k = kernel([], features={"abort_ev4": True})
    ldrd = CATALOGUE["ldrd"].encoding   # bit 20 = 0: decoded as a store
    ldr = CATALOGUE["ldr"].encoding     # bit 20 = 1
    assert legacy.cpu_abort_model(k, fault(0x417, 0x20000, insn=ldrd))[1] == 0x817
    assert legacy.cpu_abort_model(k, fault(0x817, 0x20000, insn=ldr))[1] == 0x017
    # do_thumb_abort: halfword bit 11 is L; 0x5600 (ldrsb reg) counts as a load.
    t = 0x30
    assert legacy.cpu_abort_model(k, fault(0x017, 0, insn=CATALOGUE["t_str"].encoding, cpsr=t))[1] == 0x817
    assert legacy.cpu_abort_model(k, fault(0x017, 0, insn=CATALOGUE["t_ldrsb"].encoding, cpsr=t))[1] == 0x017
    assert legacy.cpu_abort_model(k, fault(0x017, 0, insn=CATALOGUE["t_str_w"].encoding, cpsr=t))[1] == 0x017
    # pabort-legacy.S: addr = pc, IFSR forced to 5
    assert legacy.cpu_abort_model(k, fault(0, 0, prefetch=True, pc=0x20000)) == (0x20000, 5)


# -- the crash corpus ------------------------------------------------------------------------

CRASH_FILES = sorted(CRASHES.glob("*.json"))


@pytest.mark.parametrize("path", CRASH_FILES, ids=[p.stem for p in CRASH_FILES])
def test_crash_corpus(path):
    s = Scenario.from_json(json.loads(path.read_text()))
    r1 = Differ(load_variant("rfc2015")).run(s)
    r2 = Differ(load_variant("rfc2015")).run(s)
    assert r1.divergence is not None
    assert r1.divergence.signature == r2.divergence.signature
    assert Differ(load_variant("fixed")).run(s).divergence is None


def test_crash_corpus_present():
    assert len(CRASH_FILES) >= 4
