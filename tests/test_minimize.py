"""pfdiff minimize: structure-aware passes keep the signature and shrink the scenario (fake arch)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakearch import FAKE, differ

from fuzz.minimize import NothingToMinimize, Size, differ_oracle, minimize
from harness.kernel.constants import (VM_FAULT_MAJOR, VM_FAULT_SIGBUS, VM_GROWSDOWN, VM_LOCKED,
                                      VM_READ, VM_SHARED, VM_WRITE)
from harness.kernel.mm import FileBacking, Pte
from harness.scenario import Scenario, TaskSpec, VmaSpec

A = 0x10000000
BIG = Scenario(
    "fake64", "user", "ldm", A + 0x1238, A + 0x3ff8,
    (VmaSpec(A - 0x8000, A - 0x6000, VM_READ | VM_SHARED),
     VmaSpec(A, A + 0x4000, VM_READ | VM_WRITE | VM_LOCKED | VM_GROWSDOWN, FileBacking(0x4000, "absent")),
     VmaSpec(A + 0x10000, A + 0x12000, VM_READ)),
    ((A - 0x8000, Pte("present", write=True, dirty=True)), (A + 0x3000, Pte("swap", rsvd=True)),
     (A + 0x10000, Pte("hwpoison"))),
    TaskSpec(sig_on_uaccess_error=True, stack_rlimit=0x1000),
    (("nx", True), ("smap", True)),
    (VM_FAULT_SIGBUS | VM_FAULT_MAJOR, None, None))


def test_minimised_scenario_keeps_the_signature_and_shrinks():
    oracle = differ_oracle(differ())
    r = minimize(BIG, FAKE, oracle)
    assert oracle(r.minimized) == oracle(BIG) == r.signature
    m = r.minimized
    assert len(m.vmas) == 1 and m.vmas[0].end - m.vmas[0].start == 0x1000 and m.vmas[0].file is None
    assert m.ptes == () and m.task == TaskSpec() and m.cpu == ()
    assert m.inject == (VM_FAULT_SIGBUS,)
    assert m.insn == "ld1"  # the simplest read of the catalogue
    assert m.addr & 0xFFF == 0
    before, after = r.before, r.after
    assert (before.vmas, before.ptes, before.injections) == (3, 3, 1)
    assert after.json_bytes < before.json_bytes and after.flags < before.flags


def test_minimisation_is_deterministic():
    a = minimize(BIG, FAKE, differ_oracle(differ()))
    b = minimize(BIG, FAKE, differ_oracle(differ()))
    assert a.minimized == b.minimized and a.runs == b.runs


def test_steps_that_change_the_signature_are_rolled_back():
    # An oracle that only reports the signature while the VMA stays writable and sp stays put:
    # the minimiser must keep VM_WRITE and sp although both "look" removable.
    base = differ_oracle(differ())

    def picky(s: Scenario) -> str | None:
        if not any(v.flags & VM_WRITE for v in s.vmas) or s.sp != BIG.sp:
            return "something else"
        return base(s)

    r = minimize(BIG, FAKE, picky)
    assert any(v.flags & VM_WRITE for v in r.minimized.vmas)
    assert r.minimized.sp == BIG.sp


def test_a_scenario_that_does_not_diverge_is_refused():
    with pytest.raises(NothingToMinimize):
        minimize(replace(BIG, inject=()), FAKE, differ_oracle(differ()))


def test_size_counts_flags_of_every_kind():
    s = Size.of(BIG)
    # VMA bits 2+4+1, PTE bits (write,user,dirty,young)+(user,young,rsvd)+(user,young),
    # one task condition and stack_rlimit, two CPU features.
    assert s.flags == 7 + 4 + 3 + 2 + 2 + 2


def test_cli_minimize_refuses_bad_input(tmp_path, capsys):
    from fuzz.cli import main
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "pfdiff/1"}')
    assert main(["minimize", str(bad)]) == 2
    assert "missing field" in capsys.readouterr().err
    assert main(["minimize", str(tmp_path / "none.json")]) == 2
