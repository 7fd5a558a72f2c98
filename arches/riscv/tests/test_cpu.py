"""riscv64 CPU: catalogue encodings, NativeFault values derived by hand from the RISC-V manuals,
no fault without a CPU fault, and the mmu/hooked cross-check."""

from __future__ import annotations

import pytest
from capstone import CS_ARCH_RISCV, CS_MODE_RISCV64, CS_MODE_RISCVC, Cs

from arches.riscv.cpu import CATALOGUE, LAYOUT, RiscvHookedCpu, RiscvMmuCpu
from harness.arch import CpuRun
from harness.kernel.mm import Pte

CPUS = {"mmu": RiscvMmuCpu(), "hooked": RiscvHookedCpu()}

# (1) what capstone must print for each catalogue entry
DISASM = {
    "lb": ["lb a1, 0(a0)"], "lh": ["lh a1, 0(a0)"], "lw": ["lw a1, 0(a0)"], "ld": ["ld a1, 0(a0)"],
    "sb": ["sb a1, 0(a0)"], "sh": ["sh a1, 0(a0)"], "sw": ["sw a1, 0(a0)"], "sd": ["sd a1, 0(a0)"],
    "sd_ra_sp_m8": ["sd ra, -8(sp)"], "sd_s0_sp_m16": ["sd s0, -0x10(sp)"],
    "amoadd.d": ["amoadd.d a1, a2, (a0)"], "amoswap.w": ["amoswap.w a1, a2, (a0)"],
    "lr.d": ["lr.d a1, (a0)"], "lr_sc.d": ["lr.d a1, (a0)", "sc.d a1, a2, (a0)"],
    "sc.d": ["sc.d a1, a2, (a0)"], "jalr": ["jr a0"],
}


def test_catalogue_disassembles() -> None:
    md = Cs(CS_ARCH_RISCV, CS_MODE_RISCV64 | CS_MODE_RISCVC)
    assert set(DISASM) == set(CATALOGUE)
    for name, insn in CATALOGUE.items():
        got = [f"{i.mnemonic} {i.op_str}" for i in md.disasm(insn.encoding, 0)]
        assert got == DISASM[name], name
        assert sum(i.size for i in md.disasm(insn.encoding, 0)) == len(insn.encoding)


UTEXT = {LAYOUT.user_text: Pte("present", user=True, exec=True)}
ADDR = 0x20008
SP = 0x30010
USER_TEXT, KERNEL_TEXT = 0x10000, 0xFFFFFFE000200000
# sstatus as the trap leaves it: SPIE (bit 5) always, SPP (bit 8) from S mode, SUM (bit 18).
SSTATUS_USER, SSTATUS_KERNEL, SSTATUS_KERNEL_SUM = 0x20, 0x120, 0x40120

# (2) Expected (scause, stval, sepc offset from the text page) per instruction, by hand from the
# privileged spec v1.10 §4.3.2 and the "A" chapter of the unprivileged spec: loads and LR raise
# a load page fault (13), stores, SC and every AMO a store/AMO page fault (15), a fetch an
# instruction page fault (12) with stval = sepc = the target. AMO/LR/SC addresses are naturally
# aligned by the CPU (ADDR is already aligned for every width), sp-relative stores access sp-off.
EXPECTED_NOT_PRESENT = {
    "lb": (13, ADDR, 0), "lh": (13, ADDR, 0), "lw": (13, ADDR, 0), "ld": (13, ADDR, 0),
    "sb": (15, ADDR, 0), "sh": (15, ADDR, 0), "sw": (15, ADDR, 0), "sd": (15, ADDR, 0),
    "sd_ra_sp_m8": (15, 0x30008, 0), "sd_s0_sp_m16": (15, 0x30000, 0),
    "amoadd.d": (15, ADDR, 0), "amoswap.w": (15, ADDR, 0), "lr.d": (13, ADDR, 0),
    "lr_sc.d": (13, ADDR, 0), "sc.d": None, "jalr": (12, ADDR, None),
}
# A present PTE that forbids the access: for data, read-only (a load then completes, so the
# protection case of a load is a supervisor-only page); LR/SC: the LR reads, the SC at +4 faults.
EXPECTED_PROT_RO = {  # PTE present, user, read-only, not executable
    "lb": None, "lh": None, "lw": None, "ld": None, "lr.d": None,
    "sb": (15, ADDR, 0), "sh": (15, ADDR, 0), "sw": (15, ADDR, 0), "sd": (15, ADDR, 0),
    "sd_ra_sp_m8": (15, 0x30008, 0), "sd_s0_sp_m16": (15, 0x30000, 0),
    "amoadd.d": (15, ADDR, 0), "amoswap.w": (15, ADDR, 0), "lr_sc.d": (15, ADDR, 4),
    "sc.d": None, "jalr": (12, ADDR, None),
}


def _run(cpu: str, insn: str, mode: str, pte: Pte | None, sum_bit: bool = False):
    ptes = dict(UTEXT)
    if pte is not None:
        ptes[0x20000] = pte
        ptes[0x30000] = pte
    return CPUS[cpu].execute(CpuRun(insn, mode, ADDR, SP, ptes, {"sum": sum_bit}))


def _check(f, expected, mode: str, sstatus: int) -> None:
    if expected is None:
        assert f is None
        return
    cause, stval, off = expected
    text = USER_TEXT if mode == "user" else KERNEL_TEXT
    sepc = stval if off is None else text + off
    assert f is not None
    assert (f.scause, f.stval, f.sepc, f.pc, f.sstatus, f.sp, f.user) == (
        cause, stval, sepc, sepc, sstatus, SP, mode == "user")


@pytest.mark.parametrize("cpu", ["mmu", "hooked"])
@pytest.mark.parametrize("insn", sorted(CATALOGUE))
def test_native_fault_by_hand(cpu: str, insn: str) -> None:
    # not present, user and kernel (kernel with SUM so the U page is reachable)
    _check(_run(cpu, insn, "user", None), EXPECTED_NOT_PRESENT[insn], "user", SSTATUS_USER)
    kexp = EXPECTED_NOT_PRESENT[insn]
    _check(_run(cpu, insn, "kernel", None, True), kexp, "kernel", SSTATUS_KERNEL_SUM)
    # protection: read-only user page, from U and from S with SUM (S never executes a U page)
    ro = Pte("present", write=False, user=True, exec=False)
    _check(_run(cpu, insn, "user", ro), EXPECTED_PROT_RO[insn], "user", SSTATUS_USER)
    _check(_run(cpu, insn, "kernel", ro, True), EXPECTED_PROT_RO[insn], "kernel", SSTATUS_KERNEL_SUM)
    # protection: user access to a supervisor page; kernel access to a user page without SUM.
    # Every access kind faults: same cause and address as not-present (first access faults).
    sup = Pte("present", write=True, user=False, exec=True)
    full_user = Pte("present", write=True, user=True, exec=True)
    _check(_run(cpu, insn, "user", sup), EXPECTED_NOT_PRESENT[insn], "user", SSTATUS_USER)
    _check(_run(cpu, insn, "kernel", full_user, False), EXPECTED_NOT_PRESENT[insn], "kernel", SSTATUS_KERNEL)


@pytest.mark.parametrize("cpu", ["mmu", "hooked"])
@pytest.mark.parametrize("insn", sorted(CATALOGUE))
def test_permitted_access_completes(cpu: str, insn: str) -> None:
    """(4) A fully permitted access raises nothing, in U mode and in S mode (S page / U page + SUM)."""
    assert _run(cpu, insn, "user", Pte("present", write=True, user=True, exec=True, dirty=True)) is None
    if insn != "jalr":
        assert _run(cpu, insn, "kernel", Pte("present", write=True, user=True, dirty=True), True) is None
    assert _run(cpu, insn, "kernel", Pte("present", write=True, user=False, exec=True, dirty=True)) is None


def test_sc_without_reservation_never_faults() -> None:
    for cpu in CPUS:
        assert _run(cpu, "sc.d", "user", None) is None


def test_page_crossing_store_reports_second_page() -> None:
    """stval is the first byte of the faulting portion: 0x21000 for an sd at 0x20ffc."""
    for cpu in CPUS:
        ptes = dict(UTEXT)
        ptes[0x20000] = Pte("present", write=True, user=True, dirty=True)
        f = CPUS[cpu].execute(CpuRun("sd", "user", 0x20FFC, SP, ptes, {}))
        assert f is not None and (f.scause, f.stval) == (15, 0x21000)


def test_mmu_and_hooked_agree() -> None:
    ptes_variants = [None, Pte(), Pte(write=True), Pte(exec=True), Pte(user=False),
                     Pte(user=False, write=True, exec=True), Pte("protnone"), Pte("swap"),
                     Pte(rsvd=True, write=True)]
    n = 0
    for insn in CATALOGUE:
        for mode in ("user", "kernel"):
            for sum_bit in (False, True):
                for pte in ptes_variants:
                    for addr in (0x20008, 0x20FFC, 0x20000, 0x3FFFFFF000, 0xFFFFFFD000000000):
                        ptes = dict(UTEXT)
                        if pte is not None:
                            ptes[0x20000] = pte
                        run = CpuRun(insn, mode, addr, 0x20010, ptes, {"sum": sum_bit})
                        assert CPUS["mmu"].execute(run) == CPUS["hooked"].execute(run), (insn, mode, sum_bit, pte, addr)
                        n += 1
    assert n > 1000
