"""Campaigns survive what kills processes: a native crash or hang in a worker becomes a harness-error
finding with its raw input and fuzzing goes on; SIGINT or SIGKILL of the campaign, then a restart,
loses no finding."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fuzz.campaign import Campaign, CampaignConfig

pytest.importorskip("arches.x86.cpu")
ROOT = Path(__file__).resolve().parent.parent
CRASH = bytes.fromhex("deadbeef") + b"crash"


def _wait(cond, what: str, limit: float = 60.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def _campaign(tmp: Path, **kw) -> Campaign:
    cfg = CampaignConfig("x86_64", "rfc2015", tmp / "findings", tmp / "corpus", seed=1,
                         progress="quiet", **kw)
    return Campaign(cfg, out=io.StringIO())


def _harness(findings: Path) -> list[dict]:
    return [json.loads(p.read_text()) | {"dir": p.parent}
            for p in findings.glob("*/meta.json") if json.loads(p.read_text())["kind"] == "harness-error"]


def test_native_crash_is_a_harness_error_and_fuzzing_goes_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PFDIFF_TEST_CRASH_ON", "deadbeef")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "seed-crash").write_bytes(CRASH)  # loaded first thing: the worker aborts
    (tmp_path / "corpus" / "seed-ok").write_bytes(b"\x01\x02")
    result = _campaign(tmp_path, runs=60).run()
    errors = _harness(tmp_path / "findings")
    assert [e["signature"] for e in errors] == ["x86_64: harness-error worker native crash"]
    assert (errors[0]["dir"] / "input.bin").read_bytes() == CRASH
    assert json.loads((errors[0]["dir"] / "scenario.json").read_text())["arch"] == "x86_64"
    assert result.crashes == 1
    # the campaign continued: a second worker incarnation finished its runs and found divergences
    log = (tmp_path / "findings" / ".artifacts" / "job0.log").read_text()
    assert log.count("ERROR: libFuzzer: deadly signal") == 1 and "Done " in log.split("deadly signal")[-1]
    assert result.execs > 0
    assert any(f.kind == "divergence" for f in result.findings)
    # the crashing seed left the corpus (or every restart would die on it), kept in quarantine
    assert not (tmp_path / "corpus" / "seed-crash").exists()
    assert not list((tmp_path / "findings" / ".artifacts").glob("job0-crash-*"))


def test_hang_is_a_harness_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PFDIFF_TEST_HANG_ON", "deadbeef")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "seed-hang").write_bytes(CRASH)
    _campaign(tmp_path, runs=20, libfuzzer_args=["-timeout=1"]).run()
    errors = _harness(tmp_path / "findings")
    assert [e["signature"] for e in errors] == ["x86_64: harness-error worker hang"]
    assert (errors[0]["dir"] / "input.bin").read_bytes() == CRASH


def _cli(tmp: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fuzz.cli", "fuzz", "--arch", "x86_64", "--seed", "1",
                             "--findings", str(tmp / "findings"), "--corpus", str(tmp / "corpus"),
                             "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _snapshot(findings: Path) -> dict[str, tuple[bytes, int]]:
    out = {}
    for meta in findings.glob("*/meta.json"):
        m = json.loads(meta.read_text())
        out[m["signature"]] = ((meta.parent / "scenario.json").read_bytes(), m["count"])
    return out


def _worker_pids(findings: Path) -> set[int]:
    return {int(p.name.split("-")[1]) for p in (findings / ".counts").glob("c-*")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_sigint_then_restart_loses_nothing(tmp_path: Path) -> None:
    p = _cli(tmp_path, "--time", "120")
    _wait(lambda: list((tmp_path / "findings").glob("*/meta.json")), "a first finding")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode in (0, 1), err
    assert "signature(s)" in out  # the summary is still printed
    before = _snapshot(tmp_path / "findings")
    assert before
    p = _cli(tmp_path, "--runs", "30")
    p.communicate(timeout=60)
    after = _snapshot(tmp_path / "findings")
    for sig, (scenario, count) in before.items():
        assert after[sig][0] == scenario  # the reproducer is never overwritten
        assert after[sig][1] >= count


def test_sigkill_of_campaign_stops_workers_and_restart_records_leftovers(tmp_path: Path) -> None:
    p = _cli(tmp_path, "--time", "120")
    # a worker has a counts file once it sees a signature a second time
    _wait(lambda: _worker_pids(tmp_path / "findings") if (tmp_path / "findings" / ".counts").is_dir() else False,
          "a worker counting sightings")
    workers = _worker_pids(tmp_path / "findings")
    p.kill()
    p.communicate(timeout=30)
    _wait(lambda: not any(_alive(w) for w in workers), "orphaned workers to exit")
    before = _snapshot(tmp_path / "findings")
    # a crash the killed campaign never got to record
    (tmp_path / "findings" / ".artifacts" / "job0-crash-0123abcd").write_bytes(CRASH)
    p = _cli(tmp_path, "--runs", "30")
    p.communicate(timeout=60)
    after = _snapshot(tmp_path / "findings")
    assert all(after[s][0] == before[s][0] and after[s][1] >= before[s][1] for s in before)
    errors = _harness(tmp_path / "findings")
    assert [(e["dir"] / "input.bin").read_bytes() for e in errors] == [CRASH]
    assert not list((tmp_path / "findings" / ".artifacts").glob("job0-crash-*"))
