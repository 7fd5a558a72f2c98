"""The `pfdiff` command. It lives in fuzz/ because it drives everything: fuzz -> harness <- arches.

Exit codes: 0 clean, 1 divergence found, 2 usage or input error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from harness.scenario import Scenario, ScenarioError

DEFAULT_TRIAGE = Path(__file__).resolve().parent.parent / "corpus" / "triage.toml"


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _arches(spec: str) -> list[str]:
    from arches import arch_names
    names = arch_names() if spec == "all" else spec.split(",")
    for n in names:
        if n not in arch_names():
            raise UsageError(f"unknown arch {n!r} (known: {', '.join(arch_names())}, all)")
    return names


def _variant(name: str):
    from harness.generic import VariantError, load_variant
    try:
        return load_variant(name)
    except VariantError as e:
        raise UsageError(str(e)) from None


def _policy(path: Path | None):
    from harness.outcome import TriageError, load_policy
    try:
        return load_policy(path)
    except TriageError as e:
        raise UsageError(str(e)) from None


def load_input(path: Path, arch: str | None) -> tuple[Scenario, bytes | None]:
    """A scenario JSON file, or a raw fuzzer input (decoded for --arch, or the arch named by the
    meta.json of the findings directory it sits in)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None
    if data.lstrip()[:1] == b"{":
        try:
            return Scenario.loads(data.decode()), None
        except (ScenarioError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: {e}") from None
    meta = path.parent / "meta.json"
    if arch is None and meta.exists():
        arch = json.loads(meta.read_text())["signature"].split(":")[0]
    if arch is None:
        raise UsageError(f"{path}: a raw fuzzer input needs --arch (or a findings meta.json beside it)")
    from arches import get_arch

    from .decode import decode, decode_any
    if arch == "all":
        from arches import arch_names
        return decode_any(data, [get_arch(n) for n in arch_names()]), data
    _arches(arch)
    return decode(data, get_arch(arch)), data


def cmd_repro(args: argparse.Namespace) -> int:
    from arches import get_arch
    from harness.diff import Differ
    from harness.report import full_report
    differ = Differ(_variant(args.generic), _policy(args.triage), args.fidelity)
    diverged = False
    loaded = [(p, load_input(p, args.arch)[0]) for p in args.files]  # validate all before running
    for path, scenario in loaded:
        try:
            result = differ.run(scenario)
        except ScenarioError as e:
            raise UsageError(f"{path}: {e}") from None
        d = result.divergence
        diverged |= d is not None and d.known is None
        if args.json:
            print(json.dumps({"file": str(path), "diverged": d is not None,
                              "signature": d.signature if d else None,
                              "known": d.known.id if d and d.known else None,
                              "variant": result.variant,
                              "legacy": result.legacy.to_json(), "generic": result.generic.to_json()}))
        else:
            print(f"== {path}")
            print(full_report(result, get_arch(scenario.arch)))
    return 1 if diverged else 0


def cmd_show(args: argparse.Namespace) -> int:
    from arches import get_arch
    from harness.report import layout
    scenario, _ = load_input(args.file, args.arch)
    try:
        arch = get_arch(scenario.arch)
    except ValueError as e:
        raise UsageError(str(e)) from None
    from harness.diff import check_scenario
    try:
        check_scenario(scenario, arch)
    except ScenarioError as e:
        raise UsageError(f"{args.file}: {e}") from None
    print(layout(scenario, arch))
    return 0


def cmd_arches(args: argparse.Namespace) -> int:
    from arches import arch_names, get_arch
    rows = []
    for name in arch_names():
        a = get_arch(name)
        rows.append({"arch": name, "family": a.family, "fidelity": list(a.fidelities),
                     "instructions": len(a.catalogue), "generic_hooks": list(a.generic_hooks),
                     "normalisations": [n.id for n in a.normalisations],
                     "cpu_features": list(a.cpu_features), "notes": a.notes})
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    for r in rows:
        print(f"{r['arch']:<8} fidelity: {','.join(r['fidelity']):<11} instructions: {r['instructions']:<3} "
              f"generic hooks: {', '.join(r['generic_hooks']) or '-'}")
        if r["normalisations"]:
            print(f"{'':<8} normalisations: {', '.join(r['normalisations'])}")
        if r["cpu_features"]:
            print(f"{'':<8} cpu features: {', '.join(r['cpu_features'])}")
    return 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .campaign import Campaign, CampaignConfig, summary_table
    names = _arches(args.arch)
    _variant(args.generic)
    _policy(args.triage)
    if args.runs is not None and args.runs <= 0:
        raise UsageError("--runs must be positive")
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    arch = args.arch if len(names) > 1 or args.arch == "all" else names[0]
    if "," in arch:
        raise UsageError("--arch takes one arch or 'all'")
    corpus = args.corpus or Path("pfdiff-corpus") / arch
    cfg = CampaignConfig(arch, args.generic, args.findings, corpus, args.runs, args.time, args.seed,
                         args.jobs, args.triage, args.fidelity, list(args.libfuzzer),
                         "quiet" if args.quiet else ("json" if args.json else "live"))
    result = Campaign(cfg).run()
    if args.json:
        for f in result.found():
            print(json.dumps({"signature": f.signature, "kind": f.kind, "count": f.count - result.before.get(f.signature, 0),
                              "first_seen": f.first_seen, "known": f.known, "reproducer": str(f.reproducer)}))
    else:
        print(summary_table(result, args.findings))
    return 1 if result.unsuppressed() else 0


def build_parser() -> Parser:
    p = Parser(prog="pfdiff", description="Differential fuzzing of Linux 4.0 page-fault handlers "
               "against the 2015 generic page-fault RFC.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    f = sub.add_parser("fuzz", help="run a fuzz campaign")
    f.add_argument("--arch", default="all", help="an arch name or 'all' (default)")
    f.add_argument("--generic", default="rfc2015", help="rfc2015 (default), fixed, or module:function")
    f.add_argument("--runs", type=int, help="total executions (libFuzzer -runs), split over jobs")
    f.add_argument("--time", type=int, help="seconds (libFuzzer -max_total_time)")
    f.add_argument("--seed", type=int, help="libFuzzer -seed (job i gets seed+i)")
    f.add_argument("--jobs", type=int, default=1, help="worker processes sharing corpus and findings")
    f.add_argument("--findings", type=Path, default=Path("pfdiff-findings"))
    f.add_argument("--corpus", type=Path, help="corpus directory (default pfdiff-corpus/ARCH)")
    f.add_argument("--triage", type=Path, default=DEFAULT_TRIAGE)
    f.add_argument("--fidelity", choices=("mmu", "hooked"))
    f.add_argument("--quiet", action="store_true")
    f.add_argument("--json", action="store_true", help="JSON-lines progress and summary")
    f.add_argument("libfuzzer", nargs="*", metavar="-flag=value",
                   help="libFuzzer flags passed through (after --)")
    f.set_defaults(func=cmd_fuzz)

    r = sub.add_parser("repro", help="replay scenario JSON files or raw fuzzer inputs")
    r.add_argument("files", type=Path, nargs="+", metavar="FILE")
    r.add_argument("--generic", default="rfc2015")
    r.add_argument("--arch", help="arch for raw inputs")
    r.add_argument("--json", action="store_true")
    r.add_argument("--triage", type=Path, default=DEFAULT_TRIAGE)
    r.add_argument("--fidelity", choices=("mmu", "hooked"))
    r.set_defaults(func=cmd_repro)

    s = sub.add_parser("show", help="lay out a scenario: VMAs, PTEs, the instruction")
    s.add_argument("file", type=Path, metavar="FILE")
    s.add_argument("--arch", help="arch for a raw input")
    s.set_defaults(func=cmd_show)

    a = sub.add_parser("arches", help="list arches, fidelity levels and generic hooks")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_arches)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as e:
        print(f"pfdiff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pfdiff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
