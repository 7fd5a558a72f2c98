"""The arm64 CPU: catalogue encodings (capstone), the ESR/FAR the emulated MMU reports for every
catalogue instruction in every fault class (expected values derived by hand from the ARM ARM), and
that an access the CPU allows never produces a fault."""

from __future__ import annotations

import capstone
import pytest

import random

from arches.arm64.cpu import CATALOGUE, LAYOUT, Arm64Cpu, HookedArm64Cpu, make_cpu
from harness.arch import CpuRun
from harness.kernel.mm import Pte

V = 0x10000000
NEIGHBOUR = V + 0x1000  # keeps the level-3 table of V's 2 MiB region allocated (as Linux would)
TEXT = {LAYOUT.user_text: Pte("present", user=True, exec=True)}

# capstone 5 spelling of each catalogue entry
DISASM = {
    "ldrb": [("ldrb", "w2, [x1]")], "ldrh": [("ldrh", "w2, [x1]")], "ldr_w": [("ldr", "w2, [x1]")],
    "ldr_x": [("ldr", "x2, [x1]")], "strb": [("strb", "w0, [x1]")], "strh": [("strh", "w0, [x1]")],
    "str_w": [("str", "w0, [x1]")], "str_x": [("str", "x0, [x1]")], "ldp": [("ldp", "x2, x3, [x1]")],
    "stp": [("stp", "x0, x2, [x1]")], "stp_sp_pre": [("stp", "x29, x30, [sp, #-0x10]!")],
    "ldxr": [("ldxr", "x2, [x1]")], "ldxr_stxr": [("ldxr", "x2, [x1]"), ("stxr", "w3, x3, [x1]")],
    "ldadd": [("ldadd", "x0, x2, [x1]")], "casal": [("casal", "x2, x0, [x1]")],
    "dc_zva": [("dc", "zva, x1")], "br": [("br", "x1")],
}


@pytest.fixture(scope="module", params=["mmu", "hooked"])
def cpu(request):
    """Every hand-derived expectation below must hold at both fidelities."""
    return make_cpu(request.param)


def test_catalogue_encodings_disassemble_as_intended():
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    assert set(DISASM) == set(CATALOGUE)
    for name, insn in CATALOGUE.items():
        got = [(i.mnemonic, i.op_str) for i in md.disasm(insn.encoding, 0)]
        assert got == DISASM[name], name
        assert len(insn.encoding) == 4 * len(got)


# -- hand-derived ESRs ---------------------------------------------------------------------------
# ARM ARM (DDI 0487) D13.2.36 ESR_ELx: EC[31:26], IL[25] (= 1: 32-bit instruction; RES1 for aborts),
# ISV[24] = 0 (no instruction syndrome for aborts taken to EL1), WnR[6], DFSC/IFSC[5:0].
# EC: 0x24 Data Abort from a lower EL, 0x25 same EL; 0x20 Instruction Abort lower EL, 0x21 same EL.
# FSC: 0b000111 translation fault level 3; 0b000110 level 2; 0b000101 level 1; 0b000100 level 0;
#      0b001011 access flag fault level 3; 0b001111 permission fault level 3; 0b100001 alignment.
# WnR: 1 for a store, for DC ZVA (treated as a store), and for an atomic read-modify-write only if a
#      read would NOT have faulted (ESR_ELx.WnR, "for faults from an atomic instruction that both reads
#      and writes ... 0 if a read of the address would have generated the fault").
DABT_EL0_READ = 0x92000000   # EC 0x24 << 26 | IL
DABT_EL0_WRITE = 0x92000040  # + WnR
DABT_EL1_READ = 0x96000000   # EC 0x25
DABT_EL1_WRITE = 0x96000040
IABT_EL0 = 0x82000000        # EC 0x20 | IL
IABT_EL1 = 0x86000000        # EC 0x21 | IL
TRANS_L3, TRANS_L2, TRANS_L1, TRANS_L0, AF_L3, PERM_L3, ALIGN = 0x07, 0x06, 0x05, 0x04, 0x0B, 0x0F, 0x21

READS = ("ldrb", "ldrh", "ldr_w", "ldr_x", "ldp", "ldxr")
WRITES = ("strb", "strh", "str_w", "str_x", "stp", "dc_zva")
RMWS = ("ldadd", "casal")


def P(**kw) -> Pte:
    return Pte("present", **kw)


def run(cpu, insn, mode, addr, ptes, sp=0x7FFFFFF000):
    return cpu.execute(CpuRun(insn, mode, addr, sp, {**TEXT, **ptes}, {}))


def check(f, esr, far, pc=None, user=True):
    assert f is not None, "the CPU did not fault"
    assert (hex(f.esr), hex(f.far)) == (hex(esr), hex(far))
    assert f.pc == (pc if pc is not None else (LAYOUT.user_text if user else LAYOUT.kernel_text))
    assert f.user == user
    assert f.pstate == (0 if user else 0x3C5)


NOT_PRESENT = {NEIGHBOUR: P(user=True)}
RO_USER = {V: P(user=True, young=True)}                # clean pte: PTE_RDONLY (set_pte_at)
OLD = {V: P(user=True, write=True, dirty=True, young=False)}
KERNEL_ONLY = {V: P(user=False, write=True, dirty=True)}  # AP[1] = 0: no EL0 access


@pytest.mark.parametrize("insn", READS)
def test_user_reads(cpu, insn):
    check(run(cpu, insn, "user", V, NOT_PRESENT), DABT_EL0_READ | TRANS_L3, V)
    check(run(cpu, insn, "user", V, OLD), DABT_EL0_READ | AF_L3, V)
    check(run(cpu, insn, "user", V, KERNEL_ONLY), DABT_EL0_READ | PERM_L3, V)
    assert run(cpu, insn, "user", V, RO_USER) is None


@pytest.mark.parametrize("insn", WRITES)
def test_user_writes(cpu, insn):
    check(run(cpu, insn, "user", V, NOT_PRESENT), DABT_EL0_WRITE | TRANS_L3, V)
    check(run(cpu, insn, "user", V, OLD), DABT_EL0_WRITE | AF_L3, V)
    check(run(cpu, insn, "user", V, RO_USER), DABT_EL0_WRITE | PERM_L3, V)


@pytest.mark.parametrize("insn", RMWS)
def test_user_atomics(cpu, insn):
    check(run(cpu, insn, "user", V, NOT_PRESENT), DABT_EL0_READ | TRANS_L3, V)   # the read faults
    check(run(cpu, insn, "user", V, OLD), DABT_EL0_READ | AF_L3, V)             # the read faults
    check(run(cpu, insn, "user", V, KERNEL_ONLY), DABT_EL0_READ | PERM_L3, V)   # the read faults
    check(run(cpu, insn, "user", V, RO_USER), DABT_EL0_WRITE | PERM_L3, V)      # only the write does


def test_user_exclusive_pair(cpu):
    check(run(cpu, "ldxr_stxr", "user", V, NOT_PRESENT), DABT_EL0_READ | TRANS_L3, V)
    f = run(cpu, "ldxr_stxr", "user", V, RO_USER)  # ldxr succeeds, the stxr (pc + 4) faults
    check(f, DABT_EL0_WRITE | PERM_L3, V, pc=LAYOUT.user_text + 4)
    assert f.insn == CATALOGUE["ldxr_stxr"].encoding[4:]


def test_user_stack_push(cpu):
    # stp x29, x30, [sp, #-16]!: the store goes to sp - 16; sp is unchanged by a faulting access.
    f = run(cpu, "stp_sp_pre", "user", 0, NOT_PRESENT, sp=V + 0x10)
    check(f, DABT_EL0_WRITE | TRANS_L3, V)
    assert f.sp == V + 0x10


def test_user_fetch(cpu):
    check(run(cpu, "br", "user", V, NOT_PRESENT), IABT_EL0 | TRANS_L3, V, pc=V)
    check(run(cpu, "br", "user", V, {V: P(user=True, exec=True, young=False)}), IABT_EL0 | AF_L3, V, pc=V)
    check(run(cpu, "br", "user", V, RO_USER), IABT_EL0 | PERM_L3, V, pc=V)          # PTE_UXN
    f = run(cpu, "br", "user", V, NOT_PRESENT)
    assert f.insn == CATALOGUE["br"].encoding


@pytest.mark.parametrize("insn", READS)
def test_kernel_reads(cpu, insn):
    check(run(cpu, insn, "kernel", V, NOT_PRESENT), DABT_EL1_READ | TRANS_L3, V, user=False)
    check(run(cpu, insn, "kernel", V, OLD), DABT_EL1_READ | AF_L3, V, user=False)
    assert run(cpu, insn, "kernel", V, RO_USER) is None  # no PAN in v4.0: EL1 reads user pages


@pytest.mark.parametrize("insn", WRITES + RMWS)
def test_kernel_writes(cpu, insn):
    esr = DABT_EL1_READ if insn in RMWS else DABT_EL1_WRITE
    check(run(cpu, insn, "kernel", V, NOT_PRESENT), esr | TRANS_L3, V, user=False)
    check(run(cpu, insn, "kernel", V, RO_USER), DABT_EL1_WRITE | PERM_L3, V, user=False)


def test_kernel_fetch_from_user_page(cpu):
    # Every v4.0 user protection has PTE_PXN (pgtable.h L84-89): an EL1 fetch is a permission fault.
    check(run(cpu, "br", "kernel", V, {V: P(user=True, exec=True)}), IABT_EL1 | PERM_L3, V, pc=V, user=False)


def test_table_levels_and_out_of_range(cpu):
    # 39-bit VA, 4K granule: walk starts at level 1. A missing L3 table -> level 2 fault, a missing
    # L2 table -> level 1; an address outside both TTBR ranges -> level 0 translation fault.
    far_gib = 0x4000000000  # a 1 GiB region with no entries at all (the user text is in the first)
    check(run(cpu, "ldr_x", "user", far_gib, {}), DABT_EL0_READ | TRANS_L1, far_gib)
    check(run(cpu, "ldr_x", "user", far_gib, {far_gib + 0x200000: P(user=True)}), DABT_EL0_READ | TRANS_L2, far_gib)
    check(run(cpu, "ldr_x", "user", 1 << 40, {}), DABT_EL0_READ | TRANS_L0, 1 << 40)
    # EL0 access to the kernel text page (AP[1] = 0): permission fault.
    check(run(cpu, "ldr_x", "user", LAYOUT.kernel_text, {}), DABT_EL0_READ | PERM_L3, LAYOUT.kernel_text)


def test_page_crossing_pair_faults_on_second_page(cpu):
    check(run(cpu, "ldp", "user", V + 0xFF8, {V: P(user=True)}), DABT_EL0_READ | TRANS_L3, V + 0x1000)
    check(run(cpu, "stp", "user", V + 0xFF8, {V: P(user=True, write=True, dirty=True), NEIGHBOUR: P(user=True)}),
          DABT_EL0_WRITE | PERM_L3, V + 0x1000)


def test_exclusive_misaligned_is_alignment_fault(cpu):
    # Exclusives require natural alignment whatever SCTLR.A says: DFSC 0b100001.
    check(run(cpu, "ldxr", "user", V + 4, {V: P(user=True)}), DABT_EL0_READ | ALIGN, V + 4)


def test_tagged_user_pointer_translates_untagged(cpu):
    # TCR_EL1.TBI0 (proc.S L234-235): the top byte of a TTBR0 data address is ignored; FAR keeps it.
    tagged = (0x5A << 56) | V
    assert run(cpu, "ldr_x", "user", tagged, {V: P(user=True)}) is None
    check(run(cpu, "ldr_x", "user", tagged, NOT_PRESENT), DABT_EL0_READ | TRANS_L3, tagged)


@pytest.mark.parametrize("insn", sorted(CATALOGUE))
def test_permitted_access_never_faults(cpu, insn):
    full = {V: P(user=True, write=True, dirty=True, exec=True, young=True),
            NEIGHBOUR: P(user=True, write=True, dirty=True, exec=True, young=True)}
    modes = CATALOGUE[insn].modes
    for mode in modes:
        if insn == "br" and mode == "kernel":
            continue  # EL1 can never execute a user page (PTE_PXN)
        sp = V + 0x800 if insn == "stp_sp_pre" else 0x7FFFFFF000
        assert run(cpu, insn, mode, V + 0x40, full, sp=sp) is None, (insn, mode)


def test_permitted_access_is_never_handed_to_a_handler():
    from harness.diff import Differ
    from harness.generic import load_variant
    from harness.scenario import Scenario
    d = Differ(load_variant("fixed"))
    s = Scenario.from_json({
        "format": "pfdiff/1", "arch": "arm64", "mode": "user", "insn": "str_x", "addr": hex(V), "sp": "0x7ffffff000",
        "vmas": [{"start": hex(V), "end": hex(V + 0x1000), "flags": ["VM_READ", "VM_WRITE"]}],
        "ptes": [{"addr": hex(V), "state": "present", "bits": ["user", "write", "dirty", "young"]}]})
    r = d.run(s)
    for o in (r.legacy, r.generic):
        assert o.disposition == "completed" and o.faults == () and o.mm_calls == ()


def test_mmu_and_hooked_agree_on_random_page_tables():
    # DESIGN §4: where both fidelities exist they must agree on every scenario.
    mmu, hooked = Arm64Cpu(), HookedArm64Cpu()
    rnd = random.Random(2015)
    faults = 0
    for i in range(600):
        base = rnd.choice([0x10000000, 0x7FFF000000, 0x20000, 0x4000000000])
        ptes = dict(TEXT)
        for _ in range(rnd.randint(0, 4)):
            a = base + rnd.randint(0, 3) * 0x1000 + rnd.choice([0, 0, 0x200000])
            ptes[a] = Pte(rnd.choice(["present"] * 5 + ["swap", "protnone"]), write=rnd.random() < .6,
                          user=rnd.random() < .85, exec=rnd.random() < .5, dirty=rnd.random() < .7,
                          young=rnd.random() < .8)
        mode = rnd.choice(["user", "kernel"])
        insn = rnd.choice([n for n, i in CATALOGUE.items() if mode in i.modes])
        addr = base + rnd.randrange(-0x1000, 0x5000)
        if rnd.random() < .5:
            addr &= ~0xFFF
        if rnd.random() < .2:
            addr = (addr & ~0xFFF) | rnd.choice([0xFF8, 0xFFC, 0xFF0, 0xFC0, 0x4, 0x1])
        if rnd.random() < .1:
            addr = rnd.choice([LAYOUT.kernel_text, 1 << 40, (0x5A << 56) | addr, 0x80 << 48 | addr])
        if insn == "br":
            addr &= ~3
        run = CpuRun(insn, mode, addr, (base + rnd.randrange(0, 0x5000)) & ~0xF, ptes, {})
        a, b = mmu.execute(run), hooked.execute(run)
        assert a == b, (run, a, b)
        faults += a is not None
    assert faults > 400  # the sample is mostly faults: it exercises the derivation, not completions
