"""Fuzz campaigns: libFuzzer/atheris worker processes sharing one corpus and one findings store,
live progress, crash isolation (a dead worker is recorded and restarted), and the summary."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
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
    recorded: bool = False  # this incarnation's exit has been handled


@dataclass
class CampaignResult:
    elapsed: float
    execs: int
    findings: list[Finding]
    before: dict[str, int]
    crashes: int
    started: float = 0.0

    def found(self) -> list[Finding]:
        """Findings seen in this campaign (new ones, or known ones seen again)."""
        return [f for f in self.findings if f.count > self.before.get(f.signature, 0)]

    def unsuppressed(self) -> list[Finding]:
        return [f for f in self.found() if f.known is None]


def worker_command(cfg: CampaignConfig, index: int, runs: int | None,
                   seconds: int | None = None) -> list[str]:
    """The libFuzzer command line of worker `index`; `seconds` overrides cfg.seconds (a restart
    gets what is left of the campaign's time, not all of it again)."""
    seconds = cfg.seconds if seconds is None else seconds
    cmd = [sys.executable, "-m", "fuzz.target", f"--arch={cfg.arch}", f"--generic={cfg.variant}",
           f"--findings={cfg.findings}"]
    if cfg.triage:
        cmd.append(f"--triage={cfg.triage}")
    if cfg.fidelity:
        cmd.append(f"--fidelity={cfg.fidelity}")
    if runs is not None:
        cmd.append(f"-runs={runs}")
    if seconds is not None:
        cmd.append(f"-max_total_time={max(1, seconds)}")
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


def _die_with_parent() -> None:
    """In the worker before exec: get SIGTERM when the campaign process dies, even by SIGKILL, so
    no orphan keeps fuzzing (libFuzzer exits cleanly on SIGTERM)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: orphans stop at their own -runs/-max_total_time
        pass


ARTIFACT_KINDS = ("crash", "timeout", "oom", "leak", "slow-unit")


class Campaign:
    def __init__(self, cfg: CampaignConfig, out: TextIO = sys.stderr) -> None:
        self.cfg = cfg
        self.out = out
        self.store = FindingsStore(cfg.findings)
        cfg.corpus.mkdir(parents=True, exist_ok=True)
        (cfg.findings / ".artifacts").mkdir(exist_ok=True)
        # libFuzzer starts from corpus/seeds/<arch>/*.json, encoded to raw inputs; seeds the
        # decoder cannot express are counted in self.seed_skipped, never fatal.
        from .corpus import seed_corpus
        self.seeded, self.seed_skipped = seed_corpus(cfg.arch, cfg.corpus)
        self.workers: list[Worker] = []
        self.crashes = 0
        self._stop = False
        self._log_start: dict[int, int] = {}  # job index -> log size when its incarnation started
        self._deadline: float | None = None

    def _spawn(self, index: int, runs: int | None) -> subprocess.Popen:
        log = self.cfg.findings / ".artifacts" / f"job{index}.log"
        stream = open(log, "ab")
        # Execution counts are read from this incarnation's part of the log only, or a restarted
        # worker would report its predecessor's last count again.
        self._log_start[index] = stream.tell()
        seconds = None if self._deadline is None else int(self._deadline - time.time() + 0.999)
        proc = subprocess.Popen(worker_command(self.cfg, index, runs, seconds), stdout=stream,
                                stderr=stream, env=_env(), start_new_session=True,
                                preexec_fn=_die_with_parent)
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
                f.seek(max(self._log_start.get(w.index, 0), log.stat().st_size - 4096))
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

    def _decode(self, raw: bytes) -> tuple[str, str | None]:
        """(arch, scenario JSON) of a raw input; JSON None when decoding is what fails."""
        try:
            from arches import arch_names, get_arch

            from .decode import decode, decode_any
            names = arch_names() if self.cfg.arch == "all" else [self.cfg.arch]
            arches = [get_arch(n) for n in names]
            s = decode(raw, arches[0]) if len(arches) == 1 else decode_any(raw, arches)
            return s.arch, s.dumps()
        except Exception:  # the raw input is still kept as the reproducer
            return self.cfg.arch, None

    def _log_tail(self, index: int) -> str:
        log = self.cfg.findings / ".artifacts" / f"job{index}.log"
        try:
            with open(log, "rb") as f:
                f.seek(max(self._log_start.get(index, 0), log.stat().st_size - 6000))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _record_artifact(self, artifact: Path, how: str, log: str) -> None:
        """A libFuzzer artifact (the input that crashed, hung or exhausted memory) as a harness-error
        finding. It is recorded before the artifact is removed, so a kill in between loses nothing;
        it leaves the corpus too (into .artifacts/quarantine/), or every restarted worker would die
        on it again while loading the corpus."""
        raw = artifact.read_bytes()
        kind = next((k for k in ARTIFACT_KINDS if artifact.name.split("-", 1)[-1].startswith(k + "-")), "crash")
        arch, scenario_json = self._decode(raw)
        m = re.search(r"Uncaught Python exception: ?\n?.*?(\w+(?:Error|Exception)\w*)", log, re.S)
        why = f"python {m.group(1)}" if m else {"crash": "native crash", "timeout": "hang",
                                                 "oom": "out of memory"}.get(kind, kind)
        sig = f"{arch}: harness-error worker {why}"
        report = (f"libFuzzer artifact: {artifact.name} ({how})\n"
                  f"reproduce: pfdiff repro --arch {self.cfg.arch} input.bin\n\nworker log tail:\n{log}")
        self.store.record(sig, "harness-error", scenario_json, raw, report)
        self._quarantine(raw)
        artifact.unlink(missing_ok=True)

    def _quarantine(self, raw: bytes) -> None:
        """Move corpus files holding exactly `raw` (libFuzzer names its own by SHA-1; seeds may
        have any name) out of the corpus."""
        quarantine = self.cfg.findings / ".artifacts" / "quarantine"
        for p in self.cfg.corpus.iterdir():
            try:
                if p.is_file() and p.stat().st_size == len(raw) and p.read_bytes() == raw:
                    quarantine.mkdir(exist_ok=True)
                    os.replace(p, quarantine / f"{p.name}-{hashlib.sha1(raw).hexdigest()[:12]}")
            except OSError:  # a worker replaced or removed it meanwhile
                continue

    def _artifacts(self, index: int | None = None) -> list[Path]:
        pattern = "job*-" if index is None else f"job{index}-"
        return sorted((p for k in ARTIFACT_KINDS
                       for p in (self.cfg.findings / ".artifacts").glob(f"{pattern}{k}-*")),
                      key=lambda p: p.stat().st_mtime)

    def _record_crash(self, w: Worker, returncode: int) -> bool:
        """A worker died: keep its input as a finding. False when it was killed from outside
        (SIGKILL/SIGTERM/SIGINT with no artifact): nothing to reproduce, only a restart."""
        how = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
        log = self._log_tail(w.index)
        artifacts = self._artifacts(w.index)
        if not artifacts:
            if returncode < 0 and -returncode in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                return False
            if self._stop:  # libFuzzer's own exit on the SIGINT we forwarded
                return False
            # Died without libFuzzer saving the input (e.g. a signal it does not handle).
            self.crashes += 1
            self.store.record(f"{self.cfg.arch}: harness-error worker died ({how}) without reproducer",
                              "harness-error", None, None, f"worker log tail:\n{log}")
            return True
        for a in artifacts:
            self.crashes += 1
            self._record_artifact(a, how, log)
        return True

    def run(self) -> CampaignResult:
        # Resume: fold counts of dead workers into meta.json, and record the artifacts of crashes
        # a killed campaign did not get to record.
        self.store.compact()
        for a in self._artifacts():
            self.crashes += 1
            self._record_artifact(a, "left by an earlier campaign", "")
        before = {f.signature: f.count for f in self.store.findings()}
        start = time.time()
        self._deadline = None if self.cfg.seconds is None else start + self.cfg.seconds
        runs = self._runs_per_job()
        if self.cfg.progress == "json":
            self.out.write(json.dumps({"type": "seeds", "new": self.seeded,
                                       "skipped": len(self.seed_skipped)}) + "\n")
        elif self.cfg.progress != "quiet":
            self.out.write(f"seeds: {self.seeded} new input(s) from corpus/seeds, "
                           f"{len(self.seed_skipped)} seed(s) skipped (not expressible by the decoder)\n")
        self.workers = [Worker(i, self._spawn(i, runs[i])) for i in range(self.cfg.jobs)]
        previous = signal.signal(signal.SIGINT, self._interrupt)
        previous_term = signal.signal(signal.SIGTERM, self._interrupt)
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
                    if rc == 0 or w.recorded:
                        continue
                    # libFuzzer exits non-zero after a crash/timeout/OOM: record (also when
                    # stopping, so no artifact waits for the next campaign), then restart with
                    # what is left of the budget.
                    w.recorded = True
                    self._record_crash(w, rc)
                    if self._stop or w.restarts >= MAX_RESTARTS:
                        continue
                    w.done_execs += w.execs
                    w.execs = 0
                    left = None if runs[w.index] is None else max(0, runs[w.index] - w.done_execs)  # type: ignore[operator]
                    elapsed = time.time() - start
                    if (left is not None and left == 0) or (self.cfg.seconds and elapsed >= self.cfg.seconds):
                        continue
                    w.restarts += 1
                    w.proc = self._spawn(w.index, left)
                    w.recorded = False
                    alive += 1
                now = time.time()
                if self._deadline is not None and now > self._deadline + 60 and not self._stop:
                    self._interrupt(signal.SIGINT, None)  # a worker ignoring -max_total_time
                if now - last_print >= 2 or not alive:
                    self._progress(now - start, before, final=not alive)
                    last_print = now
                if not alive:
                    break
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
            for w in self.workers:
                if w.proc.poll() is None:
                    os.killpg(w.proc.pid, signal.SIGTERM)
                    w.proc.wait()
        if self.cfg.progress == "live" and getattr(self.out, "isatty", lambda: False)():
            self.out.write("\n")
        execs = sum(w.done_execs + w.execs for w in self.workers)
        return CampaignResult(time.time() - start, execs, self.store.findings(), before, self.crashes,
                              start)

    def _interrupt(self, signum: int, frame: object) -> None:
        self._stop = True
        for w in self.workers:
            if w.proc.poll() is None:
                os.killpg(w.proc.pid, signal.SIGINT)

    def _progress(self, elapsed: float, before: dict[str, int], final: bool = False) -> None:
        if self.cfg.progress == "quiet":
            return
        execs = sum(w.done_execs + w.execs for w in self.workers)
        stats = signature_stats(self.store.findings(), before)
        try:
            corpus = sum(1 for _ in self.cfg.corpus.iterdir())
        except OSError:
            corpus = 0
        rate = execs / elapsed if elapsed else 0.0
        restarts = sum(w.restarts for w in self.workers)
        if self.cfg.progress == "json":
            self.out.write(json.dumps({"type": "progress", "final": final, "elapsed": round(elapsed, 1),
                                       "execs": execs, "exec_per_s": round(rate, 1), "corpus": corpus,
                                       "jobs": self.cfg.jobs, "arch": self.cfg.arch,
                                       "crashes": self.crashes, "restarts": restarts, **stats}) + "\n")
        else:
            total = stats["total"]
            line = (f"[{self.cfg.arch}] {elapsed:6.0f}s  execs {execs:>9}  {rate:7.0f}/s  corpus {corpus:>5}  "
                    f"signatures: {total['new']} new, {total['seen']} known seen, {total['suppressed']} suppressed, "
                    f"{total['harness']} harness")
            if self.cfg.arch == "all":
                line += "  | " + " ".join(f"{a} {c['new']}/{c['seen']}" for a, c in stats["per_arch"].items())
            if self.crashes:
                line += f"  crashes {self.crashes}"
            # A terminal gets one line rewritten in place; a log (CI) gets one line per report.
            tty = getattr(self.out, "isatty", lambda: False)()
            self.out.write(("\r\x1b[K" + line) if tty else line + "\n")
        self.out.flush()


def signature_stats(findings: list[Finding], before: dict[str, int]) -> dict:
    """Signatures seen in this campaign: new ones (not in the store before it started), known ones
    seen again, suppressed ones and harness errors; in total and per arch (the signature's prefix,
    which for the all-arches target is the arch the first input byte chose)."""
    def bucket() -> dict[str, int]:
        return {"new": 0, "seen": 0, "suppressed": 0, "harness": 0}

    total = bucket()
    per_arch: dict[str, dict[str, int]] = {}
    for f in findings:
        if f.count <= before.get(f.signature, 0):
            continue
        arch = f.signature.split(":", 1)[0]
        for b in (total, per_arch.setdefault(arch, bucket())):
            if f.kind == "harness-error":
                b["harness"] += 1
            elif f.known:
                b["suppressed"] += 1
            elif f.signature in before:
                b["seen"] += 1
            else:
                b["new"] += 1
    return {"total": total, "per_arch": dict(sorted(per_arch.items()))}


def summary_table(result: CampaignResult, root: Path) -> str:
    rows = result.found()
    if not rows:
        return f"no divergence in {result.execs} executions ({result.elapsed:.0f}s)"
    lines = [f"{len(rows)} signature(s) in {result.execs} executions ({result.elapsed:.0f}s):",
             f"{'count':>7}  {'first seen':<19}  {'after':>7}  {'status':<8}  signature / reproducer"]
    for f in sorted(rows, key=lambda f: (f.kind, -f.count)):
        status = "known" if f.known else ("new" if f.signature not in result.before else "seen")
        if f.kind == "harness-error":
            status = "HARNESS"
        first = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.first_seen))
        # how far into this campaign a new signature turned up (time to bug); "-" if older
        after = f"{f.first_seen - result.started:6.0f}s" if result.started and f.first_seen >= result.started else "-"
        lines.append(f"{f.count - result.before.get(f.signature, 0):>7}  {first:<19}  {after:>7}  {status:<8}  {f.signature}")
        lines.append(f"{'':>7}  {'':<19}  {'':>7}  {'':<8}    {f.reproducer}")
    return "\n".join(lines)
