"""A fetch that reaches its target is complete: the CPU reports no exception for what lies there.

riscv-privileged v1.10 §4.3.2: an instruction fetch page-faults (scause 12, stval = sepc = the
fetch address) when the leaf PTE at the target is invalid, lacks X, or lacks U for U mode (or has
U for S mode). A fetch the PTE permits raises nothing. The catalogue's `jalr` is one instruction
(jr a0): what the target holds, and the page after it, are not part of the access. The hunt
(riscv64 fixed, seed 7) found the CPU executing one more instruction at the target: an
illegal-instruction exception (cause 2) when the target was in the text page (zeros there), and a
spurious cause-12 fault on the next page when the target was a page's last word.
"""

from __future__ import annotations

import pytest

from arches.riscv.cpu import RiscvHookedCpu, RiscvMmuCpu
from harness.arch import CpuRun
from harness.diff import Differ
from harness.generic import load_variant
from harness.kernel.mm import Pte
from harness.scenario import Scenario

CPUS = {"mmu": RiscvMmuCpu(), "hooked": RiscvHookedCpu()}
USER_TEXT = 0x10000  # LAYOUT.user_text
TEXT_PTE = {USER_TEXT: Pte("present", user=True, exec=True)}
UX = Pte("present", user=True, exec=True)      # V|R|X|U: U-mode fetch permitted
U_NOX = Pte("present", user=True, exec=False)  # V|R|U: U-mode fetch forbidden (no X)
SP = 0x30010


def run(cpu: str, addr: int, ptes: dict, mode: str = "user"):
    return CPUS[cpu].execute(CpuRun("jalr", mode, addr, SP, ptes, {}))


@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_target_in_the_text_page_completes(cpu: str) -> None:
    # The text page is V|R|X|U: the fetch at 0x10ffc is permitted. Its word is zero (an illegal
    # instruction if executed); the fetch still completes with no exception.
    assert run(cpu, USER_TEXT + 0xFFC, dict(TEXT_PTE)) is None
    assert run(cpu, USER_TEXT + 0x800, dict(TEXT_PTE)) is None


@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_target_in_a_page_last_word_does_not_fetch_the_next_page(cpu: str) -> None:
    # 0x20ffc is in an executable user page; 0x21000 has no PTE. The fetch at 0x20ffc completes;
    # nothing is fetched from 0x21000.
    assert run(cpu, 0x20FFC, {**TEXT_PTE, 0x20000: UX}) is None


@pytest.mark.parametrize("cpu", sorted(CPUS))
@pytest.mark.parametrize("pte", [None, U_NOX], ids=["not-present", "no-x"])
def test_forbidden_target_still_faults_at_the_target(cpu: str, pte) -> None:
    # §4.3.2: cause 12 with stval = sepc = the target, whatever the page after it holds.
    ptes = {**TEXT_PTE, 0x21000: UX}
    if pte is not None:
        ptes[0x20000] = pte
    f = run(cpu, 0x20FFC, ptes)
    assert f is not None and (f.scause, f.stval, f.sepc) == (12, 0x20FFC, 0x20FFC)


def test_hunt_reproducer_one_fault_each_side() -> None:
    """The `faults 2 -> 3 [done | generic:account_pass]` reproducer, minimised: a user jump to the
    last word of a not-present page in a VM_WRITE|VM_EXEC anonymous vma. Fact sheet §5.2: cause 12
    needs VM_EXEC (L100-103), handle_mm_fault() maps the page, the first pass counts a minor fault
    (L145-170), done. The retried fetch then completes: one fault on each side."""
    s = Scenario.from_json({
        "format": "pfdiff/1", "arch": "riscv64", "mode": "user", "insn": "jalr",
        "addr": "0x3ffffefffc", "sp": "0x3fffff0038",
        "vmas": [{"start": "0x3ffffef000", "end": "0x3fffff3000", "flags": ["VM_WRITE", "VM_EXEC"]}],
        "ptes": [], "task": {}, "cpu": {"sum": False}, "inject": []})
    for fidelity in ("mmu", "hooked"):
        r = Differ(load_variant("fixed"), fidelity=fidelity).run(s)
        assert r.divergence is None, (fidelity, r.divergence)
        for side in (r.legacy, r.generic):
            assert side.disposition == "completed" and len(side.faults) == 1
            assert (side.maj_flt, side.min_flt) == (0, 1)
