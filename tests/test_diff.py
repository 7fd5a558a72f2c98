"""The fault loop (harness/diff.py) and the comparison (harness/outcome.py), on the test arch:
what reaches a handler, how a run ends, and what a divergence's signature says."""

from __future__ import annotations

from dataclasses import replace

import fakearch
import pytest

from harness.arch import CpuRun
from harness.diff import MAX_FAULTS, run_side
from harness.kernel import Pte
from harness.kernel.constants import VM_FAULT_SIGBUS, VM_READ, VM_WRITE
from harness.outcome import NORMALISATIONS, Policy, Suppression, compare
from harness.scenario import Scenario, ScenarioError, TaskSpec, VmaSpec

A = 0x10000000


def scenario(**kw) -> Scenario:
    base = dict(arch="fake64", mode="user", insn="ld8", addr=A, sp=0x7FFFFFFF0000,
                vmas=(VmaSpec(A, A + 0x1000, VM_READ | VM_WRITE),))
    base.update(kw)
    return Scenario(**base)


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, k, fault) -> None:
        self.calls += 1
        fakearch.legacy(k, fault)


def test_a_fault_the_cpu_did_not_raise_is_never_handed_to_a_handler():
    s = scenario(ptes=((A, Pte(write=True)),))
    handler = Recorder()
    out = run_side(s, fakearch.FAKE, fakearch.FakeCpu(), handler)
    assert handler.calls == 0 and out.disposition == "completed" and not out.faults


def test_the_handler_sees_exactly_the_faults_the_cpu_raised():
    handler = Recorder()
    out = run_side(scenario(), fakearch.FAKE, fakearch.FakeCpu(), handler)
    # Not present -> handled (PTE installed) -> re-executed -> completes.
    assert handler.calls == 1 and out.disposition == "completed"
    assert out.min_flt == 1 and [a for a, _ in out.ptes] == [0x400000, A]


def test_same_fault_without_progress_is_a_livelock_not_an_endless_loop():
    class NeverSatisfied(fakearch.FakeCpu):
        def execute(self, run: CpuRun):
            return super().execute(replace(run, ptes={}))  # the CPU never sees the new PTE

    out = run_side(scenario(), fakearch.FAKE, NeverSatisfied(), fakearch.legacy)
    assert out.disposition == "livelock" and len(out.faults) == 2


def test_fault_limit_ends_a_run_that_keeps_changing_state():
    class Forever(fakearch.FakeCpu):
        def execute(self, run: CpuRun):
            return super().execute(replace(run, ptes={}, addr=run.addr + 0x1000 * len(run.ptes)))

    vmas = (VmaSpec(A, A + 0x100000, VM_READ | VM_WRITE),)
    out = run_side(scenario(vmas=vmas), fakearch.FAKE, Forever(), fakearch.legacy)
    assert out.disposition == "livelock" and len(out.faults) == MAX_FAULTS


def test_leaked_mmap_sem_is_a_kernel_bug():
    def leaky(k, fault) -> None:
        k.down_read_trylock()

    out = run_side(scenario(), fakearch.FAKE, fakearch.FakeCpu(), leaky)
    assert out.disposition == "kernel_bug" and "mmap_sem" in out.detail


def test_signal_and_fatal_signal_dispositions():
    out = run_side(scenario(insn="st8", vmas=(VmaSpec(A, A + 0x1000, VM_READ),)), fakearch.FAKE,
                   fakearch.FakeCpu(), fakearch.legacy)
    assert out.disposition == "signal" and out.signal.signo == 11
    out = run_side(scenario(task=TaskSpec(fatal_signal=True)), fakearch.FAKE, fakearch.FakeCpu(), fakearch.legacy)
    assert out.disposition == "killed"


def test_divergence_signature_names_field_values_and_routes():
    d = fakearch.differ()
    r = d.run(scenario(inject=(VM_FAULT_SIGBUS,)))
    assert r.divergence is not None
    assert r.divergence.signature == (
        "fake64: signal SIGBUS -> SIGSEGV [fake:legacy:sigbus | generic:mm_fault_error:sigbus]")
    assert d.run(scenario()).divergence is None


def test_signature_leaves_addresses_out():
    d = fakearch.differ()
    one = d.run(scenario(inject=(VM_FAULT_SIGBUS,))).divergence
    other = d.run(scenario(addr=A + 0x800, inject=(VM_FAULT_SIGBUS,))).divergence
    assert one.signature == other.signature


def test_suppression_marks_known_but_keeps_the_divergence():
    sup = Suppression("FAKE-1", "fake64: signal SIGBUS -> SIGSEGV *", "planted")
    d = fakearch.differ(policy=Policy(NORMALISATIONS, (sup,)))
    div = d.run(scenario(inject=(VM_FAULT_SIGBUS,))).divergence
    assert div is not None and div.known == sup


def test_normalisation_removes_only_what_it_names():
    r = fakearch.differ().run(scenario())
    legacy = r.legacy
    generic = replace(legacy, mm_calls=tuple(replace(c, flags=c.flags | 0x100) for c in legacy.mm_calls))
    assert compare("fake64", legacy, generic, Policy()) is None  # FAULT_FLAG_PROT: unread by v4.0
    generic = replace(legacy, mm_calls=tuple(replace(c, flags=c.flags | 0x1) for c in legacy.mm_calls))
    assert compare("fake64", legacy, generic, Policy()).field == "handle_mm_fault[0].flags"


def test_scenario_checks_against_the_arch():
    d = fakearch.differ()
    with pytest.raises(ScenarioError, match="catalogue"):
        d.run(scenario(insn="nope"))
    with pytest.raises(ScenarioError, match="user mode|kernel mode"):
        d.run(scenario(insn="jmp", mode="kernel"))
    with pytest.raises(ScenarioError, match="text page"):
        d.run(scenario(vmas=(VmaSpec(0x400000, 0x401000, VM_READ),)))
    with pytest.raises(ScenarioError, match="no feature"):
        d.run(scenario(cpu=(("pku", True),)))


def test_a_pasted_signature_matches_itself_brackets_included():
    sig = "fake64: signal SIGBUS -> SIGSEGV [fake:legacy:sigbus | generic:mm_fault_error:sigbus]"
    assert Policy(NORMALISATIONS, (Suppression("S", sig, "n"),)).known(sig) is not None
    assert Policy(NORMALISATIONS, (Suppression("S", "fake64: signal * [*]", "n"),)).known(sig) is not None
    assert Policy(NORMALISATIONS, (Suppression("S", "fake64: signal SIGBUS -> SIGSEGV [f]", "n"),)).known(sig) is None
