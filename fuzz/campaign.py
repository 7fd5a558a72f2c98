"""Fuzz campaigns: libFuzzer/atheris worker processes sharing one corpus and one findings store,
live progress, crash isolation (a dead worker is recorded and restarted), and the summary."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .findings import Finding, FindingsStore

MAX_RESTARTS = 100
STAT_RE = re.compile(r"^#(\d+)\s.*?exec/s: (\d+)")


@dataclass
class CampaignConfig:
    arch: str
    variant: str
    findings: Path
    corpus: Path
    runs: int | None = None
    seconds: int | None = None
    seed: int | None = None
    jobs: int = 1
    triage: Path | None = None
    fidelity: str | None = None
    libfuzzer_args: list[str] = field(default_factory=list)
    progress: str = "live"  # live | quiet | json


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    execs: int = 0
    done_execs: int = 0  # executions of earlier (crashed and restarted) incarnations
    restarts: int = 0
    log: Path | None = None


@dataclass
class CampaignResult:
    elapsed: float
    execs: int
    findings: list[Finding]
    before: dict[str, int]
    crashes: int

    def found(self) -> list[Finding]:
        """Findings seen in this campaign (new ones, or known ones seen again)."""
        return [f for f in self.findings if f.count > self.before.get(f.signature, 0)]

    def unsuppressed(self) -> list[Finding]:
        return [f for f in self.found() if f.known is None]


def worker_command(cfg: CampaignConfig, index: int, runs: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "fuzz.target", f"--arch={cfg.arch}", f"--generic={cfg.variant}",
           f"--findings={cfg.findings}"]
    if cfg.triage:
        cmd.append(f"--triage={cfg.triage}")
    if cfg.fidelity:
        cmd.append(f"--fidelity={cfg.fidelity}")
    if runs is not None:
        cmd.append(f"-runs={runs}")
    if cfg.seconds is not None:
        cmd.append(f"-max_total_time={cfg.seconds}")
    if cfg.seed is not None:
        cmd.append(f"-seed={cfg.seed + index}")
    artifacts = cfg.findings / ".artifacts"
    cmd += [f"-artifact_prefix={artifacts}/job{index}-", "-print_final_stats=1", "-timeout=30",
            "-rss_limit_mb=4096", *cfg.libfuzzer_args, str(cfg.corpus)]
    return cmd


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Campaign:
    def __init__(self, cfg: CampaignConfig, out: TextIO = sys.stderr) -> None:
        self.cfg = cfg
        self.out = out
        self.store = FindingsStore(cfg.findings)
        cfg.corpus.mkdir(parents=True, exist_ok=True)
        (cfg.findings / ".artifacts").mkdir(exist_ok=True)
        self.workers: list[Worker] = []
        self.crashes = 0
        self._stop = False

    def _spawn(self, index: int, runs: int | None) -> subprocess.Popen:
        log = self.cfg.findings / ".artifacts" / f"job{index}.log"
        stream = open(log, "ab")
        proc = subprocess.Popen(worker_command(self.cfg, index, runs), stdout=stream, stderr=stream,
                                env=_env(), start_new_session=True)
        stream.close()
        return proc

    def _runs_per_job(self) -> list[int | None]:
        if self.cfg.runs is None:
            return [None] * self.cfg.jobs
        base, extra = divmod(self.cfg.runs, self.cfg.jobs)
        return [base + (1 if i < extra else 0) for i in range(self.cfg.jobs)]

    def _read_execs(self, w: Worker) -> int:
        log = self.cfg.findings / ".artifacts" / f"job{w.index}.log"
        try:
            with open(log, "rb") as f:
                f.seek(max(0, log.stat().st_size - 4096))
                tail = f.read().decode(errors="replace").splitlines()
        except OSError:
            return w.execs
        for line in reversed(tail):
            m = STAT_RE.match(line)
            if m:
                return int(m.group(1))
            if line.startswith("stat::number_of_executed_units:"):
                return int(line.split(":")[-1])
        return w.execs

    def _record_crash(self, w: Worker, returncode: int) -> None:
        """A worker died (native crash in the emulator, or a hang): keep its input as a finding."""
        self.crashes += 1
        artifacts = sorted((self.cfg.findings / ".artifacts").glob(f"job{w.index}-*"),
                           key=lambda p: p.stat().st_mtime)
        raw = artifacts[-1].read_bytes() if artifacts else None
        scenario_json = None
        if raw is not None:
            try:
                from arches import arch_names, get_arch

                from .decode import decode, decode_any
                names = arch_names() if self.cfg.arch == "all" else [self.cfg.arch]
                arches = [get_arch(n) for n in names]
                s = decode(raw, arches[0]) if len(arches) == 1 else decode_any(raw, arches)
                scenario_json = s.dumps()
            except Exception:  # the decoder is what crashed: the raw input is still kept
                scenario_json = None
        how = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
        sig = f"{self.cfg.arch}: harness-error worker died ({how})"
        log = (self.cfg.findings / ".artifacts" / f"job{w.index}.log").read_text(errors="replace")[-4000:]
        self.store.record(sig, "harness-error", scenario_json, raw, "worker log tail:\n" + log)
        for a in artifacts:
            a.unlink()

    def run(self) -> CampaignResult:
        before = {f.signature: f.count for f in self.store.findings()}
        start = time.time()
        runs = self._runs_per_job()
        self.workers = [Worker(i, self._spawn(i, runs[i])) for i in range(self.cfg.jobs)]
        previous = signal.signal(signal.SIGINT, self._interrupt)
        last_print = 0.0
        try:
            while True:
                alive = 0
                for w in self.workers:
                    w.execs = self._read_execs(w)
                    rc = w.proc.poll()
                    if rc is None:
                        alive += 1
                        continue
                    if rc in (0,) or self._stop or w.restarts >= MAX_RESTARTS:
                        continue
                    # libFuzzer exits non-zero after a crash/timeout/OOM: record, restart with
                    # what is left of the budget.
                    self._record_crash(w, rc)
                    w.done_execs += w.execs
                    left = None if runs[w.index] is None else max(0, runs[w.index] - w.done_execs)  # type: ignore[operator]
                    elapsed = time.time() - start
                    if (left is not None and left == 0) or (self.cfg.seconds and elapsed >= self.cfg.seconds):
                        continue
                    w.restarts += 1
                    w.proc = self._spawn(w.index, left)
                    alive += 1
                now = time.time()
                if now - last_print >= 2 or not alive:
                    self._progress(now - start, before)
                    last_print = now
                if not alive:
                    break
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGINT, previous)
            for w in self.workers:
                if w.proc.poll() is None:
                    os.killpg(w.proc.pid, signal.SIGTERM)
                    w.proc.wait()
        if self.cfg.progress == "live":
            self.out.write("\n")
        execs = sum(w.done_execs + w.execs for w in self.workers)
        return CampaignResult(time.time() - start, execs, self.store.findings(), before, self.crashes)

    def _interrupt(self, signum: int, frame: object) -> None:
        self._stop = True
        for w in self.workers:
            if w.proc.poll() is None:
                os.killpg(w.proc.pid, signal.SIGINT)

    def _progress(self, elapsed: float, before: dict[str, int]) -> None:
        if self.cfg.progress == "quiet":
            return
        execs = sum(w.done_execs + w.execs for w in self.workers)
        findings = self.store.findings()
        new = sum(1 for f in findings if f.signature not in before)
        seen = sum(1 for f in findings if f.count > before.get(f.signature, 0))
        corpus = sum(1 for _ in self.cfg.corpus.iterdir())
        if self.cfg.progress == "json":
            self.out.write(json.dumps({"elapsed": round(elapsed, 1), "execs": execs,
                                       "exec_per_s": round(execs / elapsed) if elapsed else 0,
                                       "corpus": corpus, "signatures_new": new,
                                       "signatures_seen": seen, "arch": self.cfg.arch}) + "\n")
        else:
            rate = execs / elapsed if elapsed else 0
            self.out.write(f"\r[{self.cfg.arch}] {elapsed:6.0f}s  execs {execs:>9}  {rate:7.0f}/s  "
                           f"corpus {corpus:>5}  signatures: {new} new, {seen} seen")
        self.out.flush()


def summary_table(result: CampaignResult, root: Path) -> str:
    rows = result.found()
    if not rows:
        return f"no divergence in {result.execs} executions ({result.elapsed:.0f}s)"
    lines = [f"{len(rows)} signature(s) in {result.execs} executions ({result.elapsed:.0f}s):",
             f"{'count':>7}  {'first seen':<19}  {'status':<8}  signature / reproducer"]
    for f in sorted(rows, key=lambda f: (f.kind, -f.count)):
        status = "known" if f.known else ("new" if f.signature not in result.before else "seen")
        if f.kind == "harness-error":
            status = "HARNESS"
        first = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.first_seen))
        lines.append(f"{f.count - result.before.get(f.signature, 0):>7}  {first:<19}  {status:<8}  {f.signature}")
        lines.append(f"{'':>7}  {'':<19}  {'':<8}    {f.reproducer}")
    return "\n".join(lines)
