"""pfdiff triage: findings re-run against the current models and triage file (fake arch, no CPU)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fakearch import FAKE, differ

from fuzz.findings import FindingsStore
from fuzz.triage import list_policy, triage_store
from harness.kernel.constants import VM_FAULT_SIGBUS, VM_READ, VM_WRITE
from harness.outcome import Policy, Suppression, load_policy
from harness.scenario import Scenario, VmaSpec

ROOT = Path(__file__).resolve().parent.parent
DIVERGES = Scenario("fake64", "user", "ld8", 0x10000008, 0x10002000,
                    (VmaSpec(0x10000000, 0x10002000, VM_READ | VM_WRITE),), inject=(VM_FAULT_SIGBUS,))
SIG = "fake64: signal SIGBUS -> SIGSEGV [fake:legacy:sigbus | generic:mm_fault_error:sigbus]"


def no_raw(data: bytes, arch: str) -> Scenario:
    raise AssertionError("no raw input expected")


def store_with(tmp_path: Path, entries: list[tuple[str, Scenario | None]]) -> Path:
    store = FindingsStore(tmp_path / "findings")
    for sig, s in entries:
        store.record(sig, "divergence", s.dumps() if s else None, None, "report")
    return store.root


def statuses(root: Path, policy: Policy | None = None) -> dict[str, tuple[str, str | None]]:
    rows = triage_store(root, differ(policy=policy), no_raw)
    return {t.finding.signature: (t.status, t.known) for t in rows}


def test_same_signature_unsuppressed_is_new(tmp_path):
    root = store_with(tmp_path, [(SIG, DIVERGES)])
    rows = triage_store(root, differ(), no_raw)
    assert [(t.status, t.signature) for t in rows] == [("new", SIG)]
    assert rows[0].failing


def test_suppressed_is_known_with_its_id(tmp_path):
    root = store_with(tmp_path, [(SIG, DIVERGES)])
    policy = Policy(suppressions=(Suppression("fake-sigbus", "fake64: signal SIGBUS -> *", "planted"),))
    rows = triage_store(root, differ(policy=policy), no_raw)
    assert [(t.status, t.known, t.failing) for t in rows] == [("known", "fake-sigbus", False)]


def test_no_longer_diverging_is_fixed(tmp_path):
    root = store_with(tmp_path, [(SIG, replace(DIVERGES, inject=()))])
    assert statuses(root) == {SIG: ("fixed", None)}


def test_other_signature_is_changed_and_failing_unless_suppressed(tmp_path):
    old = "fake64: signal SIGBUS -> SIGSEGV [something | else]"
    root = store_with(tmp_path, [(old, DIVERGES)])
    [row] = triage_store(root, differ(), no_raw)
    assert (row.status, row.signature, row.failing) == ("changed", SIG, True)
    # A signature pasted whole is a suppression pattern that matches it ("[" is literal).
    policy = Policy(suppressions=(Suppression("s", SIG, "n"),))
    [row] = triage_store(root, differ(policy=policy), no_raw)
    assert (row.status, row.known, row.failing) == ("changed", "s", False)


def test_unreplayable_finding_is_an_error_not_a_crash(tmp_path):
    root = store_with(tmp_path, [(SIG, DIVERGES), ("fake64: harness-error X", None)])
    bad = root / next(p.name for p in root.iterdir() if (p / "scenario.json").exists())
    (bad / "scenario.json").write_text("{not json")
    got = statuses(root)
    assert got[SIG][0] == "error"
    assert got["fake64: harness-error X"][0] == "error"
    # The store itself is untouched: triage never rewrites a finding.
    assert (bad / "scenario.json").read_text() == "{not json"
    assert json.loads((bad / "meta.json").read_text())["count"] == 1


def test_triage_file_in_repo_loads_and_lists_both_kinds():
    policy = load_policy(ROOT / "corpus" / "triage.toml")
    text = list_policy(policy, [FAKE])
    assert "rfc-fault-flags-unread-by-v4.0-core" in text
    assert text.index("normalisations") < text.index("suppressions")


def test_cli_triage_usage_errors(tmp_path, capsys):
    from fuzz.cli import main
    assert main(["triage", str(tmp_path / "missing")]) == 2
    assert "no findings directory" in capsys.readouterr().err
    (tmp_path / "t.toml").write_text("[[suppression]]\nid = 1\n")
    assert main(["triage", str(tmp_path), "--triage", str(tmp_path / "t.toml")]) == 2
    assert main(["triage"]) == 2
