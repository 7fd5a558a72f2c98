"""The findings store under concurrency: one directory per signature across processes, the first
reproducer never overwritten, counts exact and kept when a process is killed."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

from fuzz.findings import FindingsStore, slug

SIGS = [f"x86_64: field{i} a -> b [r | generic:r]" for i in range(5)]


def _hammer(root: str, who: int, n: int) -> None:
    store = FindingsStore(Path(root))
    for i in range(n):
        sig = SIGS[i % len(SIGS)]
        if not store.count_if_known(sig):
            store.record(sig, "divergence", f'{{"who": {who}}}', bytes([who]), f"report from {who}")


def test_processes_share_one_directory_per_signature_with_exact_counts(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    findings = FindingsStore(tmp_path).findings()
    assert sorted(f.signature for f in findings) == sorted(SIGS)
    assert sum(f.count for f in findings) == 4 * 200
    for f in findings:
        who = json.loads((f.path / "scenario.json").read_text())["who"]
        # reproducer, raw input and report all come from the same (first) process
        assert (f.path / "input.bin").read_bytes() == bytes([who])
        assert (f.path / "report.txt").read_text() == f"report from {who}"
    # folding dead processes' counts into meta.json changes no total
    FindingsStore(tmp_path).compact()
    assert not list((tmp_path / ".counts").glob("c-*"))
    assert sum(json.loads(p.read_text())["count"] for p in tmp_path.glob("*/meta.json")) == 800
    assert sum(f.count for f in FindingsStore(tmp_path).findings()) == 800


def _count_then_hang(root: str, ready, n: int) -> None:
    store = FindingsStore(Path(root))
    store.record(SIGS[0], "divergence", "{}", b"x", "r")
    for _ in range(n - 1):
        assert store.count_if_known(SIGS[0])
    ready.set()
    signal.pause()


def test_counts_survive_sigkill_and_live_files_are_not_compacted(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_count_then_hang, args=(str(tmp_path), ready, 50))
    p.start()
    assert ready.wait(30)
    FindingsStore(tmp_path).compact()  # the owner is alive: its file must stay
    assert len(list((tmp_path / ".counts").glob("c-*"))) == 1
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert [f.count for f in FindingsStore(tmp_path).findings()] == [50]
    FindingsStore(tmp_path).compact()
    assert json.loads((tmp_path / slug(SIGS[0]) / "meta.json").read_text())["count"] == 50


def test_existing_finding_is_never_overwritten(tmp_path: Path) -> None:
    a, b = FindingsStore(tmp_path), FindingsStore(tmp_path)
    assert a.record(SIGS[0], "divergence", "first", b"1", "r1")
    assert not b.record(SIGS[0], "divergence", "second", b"2", "r2")
    d = tmp_path / slug(SIGS[0])
    assert (d / "scenario.json").read_text() == "first" and (d / "input.bin").read_bytes() == b"1"
    assert FindingsStore(tmp_path).findings()[0].count == 2
