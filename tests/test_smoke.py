"""`pfdiff smoke`: the crash-corpus replay holds reproducers to their recorded signatures, the
seeded fuzz part is deterministic, and the JUnit file names every case."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fuzz import smoke
from fuzz.cli import main

pytest.importorskip("arches.x86.cpu")


def _find(diverges: bool):
    """A decoder scenario for x86_64 that does (or does not) diverge under rfc2015 and not under fixed."""
    from arches import get_arch
    from fuzz.decode import decode

    arch = get_arch("x86_64")
    checker = smoke.Checker(None)
    for data in smoke.seeded_inputs(7, "x86_64", 2000):
        s = decode(data, arch)
        try:
            r, f = checker.differ("rfc2015").run(s), checker.differ("fixed").run(s)
        except Exception:
            continue
        if (r.divergence is not None) == diverges and f.divergence is None:
            return s, r.divergence
    pytest.fail("no suitable scenario in 2000 seeded inputs")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crashes")
    (root / "x86_64").mkdir()
    s, _ = _find(True)
    (root / "x86_64" / "known.json").write_text(s.dumps())
    assert main(["smoke", "--crashes", str(root), "--update", "--triage", "/nonexistent"]) == 0
    return root


def _copy(corpus: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "crashes"
    shutil.copytree(corpus, dst)
    return dst


def test_update_records_signature_in_sidecar(corpus: Path) -> None:
    s, d = _find(True)
    assert (corpus / "x86_64" / "known.sig").read_text().splitlines()[0] == d.signature


def test_replay_passes_and_writes_junit(corpus: Path, tmp_path: Path) -> None:
    junit = tmp_path / "smoke.xml"
    rc = main(["smoke", "--crashes", str(corpus), "--arch", "x86_64", "--runs", "0",
               "--junit", str(junit), "--triage", "/nonexistent"])
    assert rc == 0
    suite = ET.parse(junit).getroot()
    names = [(tc.get("classname"), tc.get("name")) for tc in suite.iter("testcase")]
    assert names == [("crashes.x86_64", "known")]
    assert suite.get("failures") == "0"


def test_fails_when_reproducer_stops_diverging(corpus: Path, tmp_path: Path, capsys) -> None:
    root = _copy(corpus, tmp_path)
    benign, _ = _find(False)
    (root / "x86_64" / "known.json").write_text(benign.dumps())  # the "fix" that hides the bug
    junit = tmp_path / "smoke.xml"
    rc = main(["smoke", "--crashes", str(root), "--runs", "0", "--junit", str(junit),
               "--triage", "/nonexistent"])
    assert rc == 1
    assert "no longer diverges" in capsys.readouterr().out
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "no longer diverges" in failure.get("message", "")


def test_fails_when_signature_changes(corpus: Path, tmp_path: Path, capsys) -> None:
    root = _copy(corpus, tmp_path)
    (root / "x86_64" / "known.sig").write_text("x86_64: something else\n")
    assert main(["smoke", "--crashes", str(root), "--runs", "0", "--triage", "/nonexistent"]) == 1
    assert "signature changed" in capsys.readouterr().out


def test_fails_without_sidecar(corpus: Path, tmp_path: Path, capsys) -> None:
    root = _copy(corpus, tmp_path)
    (root / "x86_64" / "known.sig").unlink()
    assert main(["smoke", "--crashes", str(root), "--runs", "0", "--triage", "/nonexistent"]) == 1
    assert "--update" in capsys.readouterr().out


def test_update_refuses_a_file_that_does_not_diverge(tmp_path: Path) -> None:
    (tmp_path / "x86_64").mkdir()
    benign, _ = _find(False)
    (tmp_path / "x86_64" / "benign.json").write_text(benign.dumps())
    assert main(["smoke", "--crashes", str(tmp_path), "--update", "--triage", "/nonexistent"]) == 1
    assert not (tmp_path / "x86_64" / "benign.sig").exists()


def test_seeded_inputs_are_deterministic() -> None:
    a = list(smoke.seeded_inputs(1, "x86_64", 20))
    assert a == list(smoke.seeded_inputs(1, "x86_64", 20))
    assert a != list(smoke.seeded_inputs(2, "x86_64", 20))
    assert a != list(smoke.seeded_inputs(1, "i386", 20))


def test_fuzz_part_fails_on_a_model_exception(monkeypatch) -> None:
    checker = smoke.Checker(None)
    real = checker.differ("fixed")

    class Boom:
        def run(self, scenario):
            raise RuntimeError("model bug")

    checker._differs["fixed"] = Boom()
    case = smoke.fuzz_arch("x86_64", 5, 1, checker, set())
    assert not case.ok and "model bug" in case.details
    checker._differs["fixed"] = real


@pytest.mark.parametrize("argv", [["smoke", "--runs", "-3"], ["smoke", "--arch", "nope"],
                                  ["smoke", "--crashes", "/nonexistent/dir"]])
def test_bad_usage_is_exit_2(argv, capsys) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1
