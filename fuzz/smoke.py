"""CI smoke fuzzing: replay the crash corpus against its recorded signatures, then fuzz every arch deterministically for a bounded number of runs.

Crash corpus layout: corpus/crashes/<arch>/<name>.json is a scenario that diverges under `rfc2015`;
the first line of the sidecar corpus/crashes/<arch>/<name>.sig is the signature it must still give
there (`pfdiff smoke --update` writes the sidecars). Under `fixed` it must not diverge, unless a
triage suppression names the divergence. A sidecar (rather than a field in the JSON) keeps the
scenario file in the corpus-of-record format, which rejects unknown fields.

The fuzz part runs in-process without atheris: a PRNG seeded with (seed, arch, run) yields the
input bytes, the stable decoder turns them into scenarios, and each runs under both variants. It
fails on a Python exception in the harness or a model (a ScenarioError, an input the arch cannot
express, is skipped) and on an unsuppressed divergence under `fixed`; rfc2015 divergences are
expected and are listed, with those missing from the crash corpus marked new. The same seed gives
the same inputs on every machine, so a failure reproduces with the same command.
"""

from __future__ import annotations

import argparse
import random
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRASHES = ROOT / "corpus" / "crashes"
DEFAULT_TRIAGE = ROOT / "corpus" / "triage.toml"
DEFAULT_RUNS = 300
DEFAULT_SEED = 2015
INPUT_BYTES = 96  # more than the decoder consumes for the largest scenario, so no input is cut short


@dataclass
class CaseResult:
    """One JUnit testcase: a crash file replayed, or one arch fuzzed."""

    classname: str
    name: str
    ok: bool
    message: str = ""
    details: str = ""
    seconds: float = 0.0
    skipped: bool = False


@dataclass
class Expectation:
    """What a crash file must do: diverge with `signature` under rfc2015, not diverge under fixed."""

    path: Path
    signature: str | None  # None: no sidecar recorded yet


def sidecar(path: Path) -> Path:
    return path.with_suffix(".sig")


def read_expectation(path: Path) -> Expectation:
    sig = sidecar(path)
    if not sig.exists():
        return Expectation(path, None)
    lines = sig.read_text().splitlines()
    return Expectation(path, lines[0].strip() if lines and lines[0].strip() else None)


def crash_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.json"))


class Checker:
    """Replays crash files; keeps one Differ per variant so the CPUs are built once."""

    def __init__(self, triage: Path | None = DEFAULT_TRIAGE) -> None:
        from harness.outcome import load_policy

        self.policy = load_policy(triage)
        self._differs: dict[str, object] = {}

    def differ(self, variant: str):
        if variant not in self._differs:
            from harness.diff import Differ
            from harness.generic import load_variant

            self._differs[variant] = Differ(load_variant(variant), self.policy)
        return self._differs[variant]

    def run(self, path: Path, variant: str):
        from harness.scenario import Scenario

        return self.differ(variant).run(Scenario.loads(path.read_text()))  # type: ignore[attr-defined]

    def check(self, path: Path, variant: str, expected: str | None) -> tuple[bool, str, str]:
        """(ok, message, report). rfc2015 must give `expected`; any other variant no divergence."""
        from arches import get_arch
        from harness.report import full_report

        try:
            result = self.run(path, variant)
        except Exception as e:  # a malformed file or a model error is a failure, reported, not raised
            return False, f"{variant}: {type(e).__name__}: {e}", traceback.format_exc()
        d = result.divergence
        report = full_report(result, get_arch(result.scenario.arch))
        if variant == "rfc2015":
            if expected is None:
                return False, f"no recorded signature ({sidecar(path).name} missing): run `pfdiff smoke --update`", report
            if d is None:
                return False, f"rfc2015: no longer diverges (expected: {expected})", report
            if d.signature != expected:
                return False, f"rfc2015: signature changed: expected {expected!r}, got {d.signature!r}", report
            return True, d.signature, report
        if d is not None and d.known is None:
            return False, f"{variant}: diverges: {d.signature}", report
        return True, f"{variant}: no divergence" + (f" (known: {d.known.id})" if d else ""), report


def replay_crashes(root: Path, checker: Checker, fixed: str = "fixed") -> list[CaseResult]:
    out = []
    for path in crash_files(root):
        t = time.perf_counter()
        exp = read_expectation(path)
        ok, msg, report = checker.check(path, "rfc2015", exp.signature)
        if ok:
            ok2, msg2, report2 = checker.check(path, fixed, None)
            if not ok2:
                ok, msg, report = ok2, msg2, report2
        out.append(CaseResult(f"crashes.{path.parent.name}", path.stem, ok, msg,
                              "" if ok else report, time.perf_counter() - t))
    return out


def seeded_inputs(seed: int, arch: str, runs: int) -> Iterable[bytes]:
    """The smoke inputs for one arch: the same bytes for the same (seed, arch, runs) everywhere."""
    rng = random.Random(f"pfdiff-smoke:{seed}:{arch}")  # str seeds hash with sha512: stable across runs
    for _ in range(runs):
        yield rng.randbytes(rng.randrange(INPUT_BYTES + 1))


def fuzz_arch(arch_name: str, runs: int, seed: int, checker: Checker, known: set[str]) -> CaseResult:
    from arches import get_arch
    from harness.scenario import ScenarioError

    from .decode import decode

    t = time.perf_counter()
    try:
        arch = get_arch(arch_name)
    except Exception as e:  # an arch that does not even import fails its own case, not the run
        return CaseResult("fuzz", arch_name, False, f"cannot load arch: {type(e).__name__}: {e}",
                          traceback.format_exc(), time.perf_counter() - t)
    errors: list[str] = []
    fixed_div: dict[str, bytes] = {}
    rfc_sigs: dict[str, int] = {}
    skipped = 0
    for i, data in enumerate(seeded_inputs(seed, arch_name, runs)):
        scenario = decode(data, arch)
        for variant in ("rfc2015", "fixed"):
            try:
                result = checker.differ(variant).run(scenario)  # type: ignore[attr-defined]
            except ScenarioError:
                skipped += 1
                break
            except Exception as e:
                where = traceback.extract_tb(e.__traceback__)[-1]
                errors.append(f"run {i} input {data.hex()}: {type(e).__name__}: {e} "
                              f"at {Path(where.filename).name}:{where.lineno}")
                break
            d = result.divergence
            if d is None:
                continue
            if variant == "rfc2015":
                rfc_sigs[d.signature] = rfc_sigs.get(d.signature, 0) + 1
            elif d.known is None:
                fixed_div.setdefault(d.signature, data)
    lines = [f"{runs} runs, seed {seed}, {skipped} skipped (ScenarioError)"]
    for sig, n in sorted(rfc_sigs.items(), key=lambda kv: -kv[1]):
        lines.append(f"rfc2015 {n:5d}  {'known ' if sig in known else 'NEW   '} {sig}")
    problems = errors[:20] + [f"fixed diverges: {sig}  input {data.hex()}" for sig, data in fixed_div.items()]
    ok = not errors and not fixed_div
    msg = "ok" if ok else f"{len(errors)} harness error(s), {len(fixed_div)} fixed divergence(s)"
    return CaseResult("fuzz", arch_name, ok, msg, "\n".join(problems + lines), time.perf_counter() - t)


def junit_xml(cases: Sequence[CaseResult]) -> bytes:
    suite = ET.Element("testsuite", name="pfdiff-smoke", tests=str(len(cases)),
                       failures=str(sum(1 for c in cases if not c.ok)),
                       skipped=str(sum(1 for c in cases if c.skipped)),
                       time=f"{sum(c.seconds for c in cases):.3f}")
    for c in cases:
        tc = ET.SubElement(suite, "testcase", classname=c.classname, name=c.name, time=f"{c.seconds:.3f}")
        if c.skipped:
            ET.SubElement(tc, "skipped", message=c.message)
        elif not c.ok:
            ET.SubElement(tc, "failure", message=c.message).text = c.details
        elif c.details:
            ET.SubElement(tc, "system-out").text = c.details
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="utf-8", xml_declaration=True)


def update(root: Path, checker: Checker, out) -> int:
    """Record each crash file's current rfc2015 signature in its sidecar; 1 if one does not diverge."""
    status = 0
    for path in crash_files(root):
        try:
            result = checker.run(path, "rfc2015")
        except Exception as e:
            print(f"FAIL {path}: {type(e).__name__}: {e}", file=out)
            status = 1
            continue
        d = result.divergence
        if d is None:
            print(f"FAIL {path}: does not diverge under rfc2015; not recorded", file=out)
            status = 1
            continue
        old = read_expectation(path).signature
        if old != d.signature:
            sidecar(path).write_text(d.signature + "\n")
            print(f"{'new ' if old is None else 'changed'} {path}: {d.signature}", file=out)
    return status


def run_smoke(crashes: Path, arches: Sequence[str], runs: int, seed: int, triage: Path | None,
              fixed: str = "fixed") -> list[CaseResult]:
    checker = Checker(triage)
    cases = replay_crashes(crashes, checker, fixed)
    known = {e.signature for e in map(read_expectation, crash_files(crashes)) if e.signature}
    for name in arches:
        if runs > 0:
            cases.append(fuzz_arch(name, runs, seed, checker, known))
    return cases


def add_parser(sub) -> None:
    """The `pfdiff smoke` subcommand (registered by fuzz/cli.py)."""
    s = sub.add_parser("smoke", help="CI smoke test: replay the crash corpus, fuzz each arch briefly")
    s.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"inputs per arch (default {DEFAULT_RUNS}; 0: replay only)")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"PRNG seed (default {DEFAULT_SEED})")
    s.add_argument("--arch", default="all", help="arches to fuzz: a name, a comma list, or 'all'")
    s.add_argument("--crashes", type=Path, default=DEFAULT_CRASHES, help="crash corpus (default corpus/crashes)")
    s.add_argument("--triage", type=Path, default=DEFAULT_TRIAGE)
    s.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML")
    s.add_argument("--update", action="store_true", help="record each crash file's current rfc2015 signature")
    s.set_defaults(func=cmd_smoke)


def cmd_smoke(args: argparse.Namespace) -> int:
    import sys

    from arches import arch_names

    from .cli import UsageError, _policy

    if args.runs < 0:
        raise UsageError("--runs must be 0 or more")
    if not args.crashes.is_dir():
        raise UsageError(f"{args.crashes}: not a directory")
    _policy(args.triage)  # a broken triage file is a usage error, not a failed smoke run
    names = arch_names() if args.arch == "all" else args.arch.split(",")
    unknown = [n for n in names if n not in arch_names()]
    if unknown:
        raise UsageError(f"unknown arch {unknown[0]!r} (known: {', '.join(arch_names())}, all)")
    if args.update:
        return update(args.crashes, Checker(args.triage), sys.stdout)
    cases = run_smoke(args.crashes, names, args.runs, args.seed, args.triage)
    for c in cases:
        print(f"{'PASS' if c.ok else 'FAIL'} {c.classname}::{c.name}  {c.message}")
        if not c.ok and c.details:
            print("    " + c.details.replace("\n", "\n    "))
    if args.junit:
        try:
            args.junit.write_bytes(junit_xml(cases))
        except OSError as e:
            raise UsageError(f"{args.junit}: {e.strerror}") from None
    failed = sum(1 for c in cases if not c.ok)
    print(f"smoke: {len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0
