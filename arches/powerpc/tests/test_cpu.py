"""The catalogue encodings (capstone) and the NativeFault of every catalogue instruction in every fault
class, against constants derived by hand from Power ISA v2.07 Book III-S and Linux v4.0 reg.h."""

import capstone
import pytest

from arches.powerpc.cpu import CATALOGUE_PPC32, CATALOGUE_PPC64, PpcCpu
from harness.arch import CpuRun
from harness.kernel.mm import Pte

EXPECTED_ASM = {
    "lbz": ["lbz r4, 0(r3)"], "lhz": ["lhz r4, 0(r3)"], "lwz": ["lwz r4, 0(r3)"], "ld": ["ld r4, 0(r3)"],
    "stb": ["stb r4, 0(r3)"], "sth": ["sth r4, 0(r3)"], "stw": ["stw r4, 0(r3)"], "std": ["std r4, 0(r3)"],
    "stwu": ["stwu r4, -0x8000(r3)"], "stwu_r1": ["stwu r1, -0x8000(r1)"],
    "stdu": ["stdu r4, -0x8000(r3)"], "stdu_r1": ["stdu r1, -0x8000(r1)"],
    "stwux": ["stwux r4, r3, r5"], "stwux_r1": ["stwux r1, r1, r5"],
    "stdux": ["stdux r4, r3, r5"], "stdux_r1": ["stdux r1, r1, r5"],
    "lmw": ["lmw r28, 0(r3)"], "stmw": ["stmw r28, 0(r3)"], "dcbz": ["dcbz 0, r3"],
    "lwarx": ["lwarx r4, 0, r3"], "lwarx_stwcx": ["lwarx r4, 0, r3", "stwcx. r4, 0, r3"],
    "bctr": ["mtctr r3", "bctr "],
}


@pytest.mark.parametrize("bits,cat", [(64, CATALOGUE_PPC64), (32, CATALOGUE_PPC32)])
def test_encodings_disassemble(bits, cat):
    md = capstone.Cs(capstone.CS_ARCH_PPC,
                     (capstone.CS_MODE_64 if bits == 64 else capstone.CS_MODE_32) | capstone.CS_MODE_BIG_ENDIAN)
    for name, insn in cat.items():
        got = [f"{i.mnemonic} {i.op_str}" for i in md.disasm(insn.prefix + insn.encoding, 0)]
        assert got == EXPECTED_ASM[name], name
    assert set(CATALOGUE_PPC64) == set(EXPECTED_ASM)
    assert "ld" not in CATALOGUE_PPC32 and "stdu_r1" not in CATALOGUE_PPC32


# Linux v4.0 reg.h: ppc64 MSR_KERNEL = SF(63)|ISF(61)|HV(60)|ME(12)|RI(1)|IR(5)|DR(4);
# MSR_USER64 adds PR(14)|EE(15). Book3S-32 MSR_KERNEL = ME|RI|IR|DR, MSR_USER adds PR|EE.
MSR = {(64, "user"): 0xB00000000000D032, (64, "kernel"): 0xB000000000001032,
       (32, "user"): 0xD032, (32, "kernel"): 0x1032}
# Book III-S 6.5.3 DSI: DSISR bit 33 (0x40000000) no translation, bit 36 (0x08000000) protection,
# bit 38 (0x02000000) store. SRR1 = MSR (bits 33:36, 42:47 cleared; none set in these MSRs).
DSISR = {("read", "none"): 0x40000000, ("write", "none"): 0x42000000,
         ("read", "prot"): 0x08000000, ("write", "prot"): 0x0A000000}
# 6.5.4 ISI: SRR1 bit 33 (0x40000000) no translation, bit 35 (0x10000000) no-execute (HPTE N=1),
# bit 36 (0x08000000) protection; other bits of SRR1 from the MSR.
ISI_NOPT, ISI_N, ISI_PROT = 0x40000000, 0x10000000, 0x08000000

ADDR = {64: 0x3FFF00000100, 32: 0x7F000100}
PAGE = {64: 0x3FFF00000000, 32: 0x7F000000}


@pytest.fixture(scope="module")
def cpus():
    return {64: PpcCpu(64), 32: PpcCpu(32)}


def _run(cpu, name, mode, addr, ptes, sp=None):
    return cpu.execute(CpuRun(name, mode, addr, sp if sp is not None else addr + 0x10000, ptes, {}))


@pytest.mark.parametrize("bits", [64, 32])
def test_data_faults_every_instruction(cpus, bits):
    cpu = cpus[bits]
    cat = CATALOGUE_PPC64 if bits == 64 else CATALOGUE_PPC32
    addr, page = ADDR[bits], PAGE[bits]
    text = {("user"): 0x10000008, ("kernel"): 0xC000000000008000 if bits == 64 else 0xC0008000}
    for name, insn in cat.items():
        if insn.access == "fetch":
            continue
        store = insn.access in ("write", "rmw")
        for mode in insn.modes:
            # not present: no PTE at all
            f = _run(cpu, name, mode, addr, {})
            kind = "read" if insn.access in ("read", "rmw") else "write"  # lwarx reads first
            assert f is not None, (name, mode)
            assert f.trap == 0x300 and f.dsisr == DSISR[(kind, "none")], (name, mode, hex(f.dsisr))
            dcbz_block = {64: 128, 32: 32}[bits]
            want_dar = addr & ~(dcbz_block - 1) if name == "dcbz" else addr
            assert f.dar == want_dar and f.msr == MSR[(bits, mode)] and f.srr1 == MSR[(bits, mode)]
            want_pc = text[mode] - (4 if name == "lwarx_stwcx" else 0)
            assert f.nip == f.pc == want_pc, (name, mode, hex(f.nip))
            assert f.user == (mode == "user")
            # protection: present, read-only, user page
            f = _run(cpu, name, mode, addr, {page: Pte("present", write=False, user=True)})
            if store:
                assert f is not None and f.dsisr == DSISR[("write", "prot")], (name, mode)
                assert f.nip == text[mode]
            else:
                assert f is None, (name, mode)
            # user access to a kernel-only present page: protection on the read (or the store)
            if mode == "user":
                f = _run(cpu, name, mode, addr, {page: Pte("present", write=True, user=False)})
                want = DSISR[("write" if kind == "write" else "read", "prot")]
                assert f is not None and f.dsisr == want, (name, hex(f.dsisr) if f else None)


@pytest.mark.parametrize("bits", [64, 32])
def test_fetch_faults(cpus, bits):
    cpu, addr, page = cpus[bits], ADDR[bits], PAGE[bits]
    for mode in ("user", "kernel"):
        msr = MSR[(bits, mode)]
        f = _run(cpu, "bctr", mode, addr, {})
        assert f.trap == 0x400 and f.nip == addr and f.srr1 == msr | ISI_NOPT and f.dsisr == 0
        f = _run(cpu, "bctr", mode, addr, {page: Pte("present", write=True, user=True, exec=False)})
        if bits == 64:  # POWER: HPTE N bit from _PAGE_EXEC
            assert f is not None and f.srr1 == msr | ISI_N
        else:           # 6xx: no per-page execute control
            assert f is None
    f = _run(cpu, "bctr", "user", addr, {page: Pte("present", write=False, user=False, exec=True)})
    assert f is not None and f.srr1 == MSR[(bits, "user")] | ISI_PROT


@pytest.mark.parametrize("bits", [64, 32])
def test_permitted_access_raises_nothing(cpus, bits):
    cpu = cpus[bits]
    cat = CATALOGUE_PPC64 if bits == 64 else CATALOGUE_PPC32
    full = {PAGE[bits]: Pte("present", write=True, user=True, exec=True, dirty=True)}
    for name, insn in cat.items():
        for mode in insn.modes:
            assert _run(cpu, name, mode, ADDR[bits], full) is None, (name, mode)


def test_r1_update_forms_carry_r1(cpus):
    cpu = cpus[64]
    f = _run(cpu, "stwux_r1", "user", ADDR[64], {}, sp=ADDR[64] + 0x300000)
    assert f.gpr1 == ADDR[64] + 0x300000 and f.dar == ADDR[64]
    f = _run(cpu, "stdu_r1", "user", ADDR[64], {})
    assert f.gpr1 == ADDR[64] + 32768 and f.dar == ADDR[64]
