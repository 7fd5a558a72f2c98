"""(5) The crash corpus diverges under rfc2015 with a stable signature and not under fixed;
the seeds run clean under fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.diff import Differ
from harness.generic import load_variant
from harness.scenario import Scenario

ROOT = Path(__file__).resolve().parents[3] / "corpus"
CRASHES = sorted((ROOT / "crashes" / "riscv64").glob("*.json"))
SEEDS = sorted((ROOT / "seeds" / "riscv64").glob("*.json"))
RFC, FIXED = Differ(load_variant("rfc2015")), Differ(load_variant("fixed"))


def test_corpus_present() -> None:
    assert len(CRASHES) >= 5 and len(SEEDS) >= 10


@pytest.mark.parametrize("path", CRASHES, ids=lambda p: p.stem)
def test_crash_diverges_under_rfc2015_only(path: Path) -> None:
    data = json.loads(path.read_text())
    assert data.get("comment")
    s = Scenario.from_json(data)
    first = RFC.run(s).divergence
    assert first is not None
    assert RFC.run(s).divergence.signature == first.signature
    assert first.signature.startswith("riscv64: ")
    assert FIXED.run(s).divergence is None


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_seed_clean_under_fixed_both_fidelities(path: Path) -> None:
    s = Scenario.loads(path.read_text())
    for fidelity in ("mmu", "hooked"):
        r = Differ(load_variant("fixed"), fidelity=fidelity).run(s)
        assert r.divergence is None, r.divergence


def test_fidelities_agree_on_outcomes() -> None:
    mmu, hooked = Differ(load_variant("fixed"), fidelity="mmu"), Differ(load_variant("fixed"), fidelity="hooked")
    for path in SEEDS + CRASHES:
        s = Scenario.loads(path.read_text())
        assert mmu.run(s).legacy == hooked.run(s).legacy, path.stem
