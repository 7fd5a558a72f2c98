"""The arm64 crash corpus diverges under rfc2015 with a stable signature and not under fixed; the
seeds run cleanly under fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.diff import Differ
from harness.generic import load_variant
from harness.scenario import Scenario

ROOT = Path(__file__).resolve().parents[3] / "corpus"
CRASHES = sorted((ROOT / "crashes" / "arm64").glob("*.json"))
SEEDS = sorted((ROOT / "seeds" / "arm64").glob("*.json"))


@pytest.fixture(scope="module", params=["mmu", "hooked"])
def differs(request):
    return (Differ(load_variant("rfc2015"), fidelity=request.param),
            Differ(load_variant("fixed"), fidelity=request.param))


def test_corpus_present():
    assert len(CRASHES) >= 2 and 10 <= len(SEEDS) <= 20


@pytest.mark.parametrize("path", CRASHES, ids=lambda p: p.stem)
def test_crash_diverges_under_rfc2015_only(differs, path):
    rfc, fix = differs
    s = Scenario.loads(path.read_text())
    first = rfc.run(s).divergence
    again = rfc.run(s).divergence
    assert first is not None, "no longer diverges under rfc2015"
    assert first.signature.startswith("arm64: ")
    assert again is not None and again.signature == first.signature
    assert first.signature == path.with_suffix(".sig").read_text().splitlines()[0].strip()
    assert Scenario.loads(path.read_text()) and '"comment"' in path.read_text()
    assert fix.run(s).divergence is None


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_seed_is_clean_under_fixed(differs, path):
    r = differs[1].run(Scenario.loads(path.read_text()))
    assert r.divergence is None
