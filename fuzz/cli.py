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


def check_input(path: Path, scenario: Scenario) -> None:
    """The scenario names a registered arch and fits it (catalogue, features, layout)."""
    from arches import UnknownArch, get_arch
    from harness.diff import check_scenario
    try:
        check_scenario(scenario, get_arch(scenario.arch))
    except (ScenarioError, UnknownArch) as e:
        raise UsageError(f"{path}: {e}") from None


def cmd_repro(args: argparse.Namespace) -> int:
    from arches import get_arch
    from harness.diff import Differ
    from harness.report import full_report
    differ = Differ(_variant(args.generic), _policy(args.triage), args.fidelity)
    diverged = False
    loaded = [(p, load_input(p, args.arch)[0]) for p in args.files]
    for path, scenario in loaded:  # validate every file before running any
        check_input(path, scenario)
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
            print(json.dumps({"type": "signature", "signature": f.signature, "kind": f.kind,
                              "count": f.count - result.before.get(f.signature, 0),
                              "first_seen": f.first_seen, "new": f.signature not in result.before,
                              "known": f.known, "reproducer": str(f.reproducer)}))
        print(json.dumps({"type": "summary", "elapsed": round(result.elapsed, 1), "execs": result.execs,
                          "exec_per_s": round(result.execs / result.elapsed, 1) if result.elapsed else 0,
                          "crashes": result.crashes, "signatures": len(result.found())}))
    else:
        print(summary_table(result, args.findings))
    return 1 if result.unsuppressed() else 0


def _decode_raw(data: bytes, arch: str) -> Scenario:
    """A raw fuzzer input for an arch name (or 'all', the multi-arch target's input)."""
    from arches import arch_names, get_arch

    from .decode import decode, decode_any
    if arch == "all":
        return decode_any(data, [get_arch(n) for n in arch_names()])
    if arch not in arch_names():
        raise ScenarioError(f"unknown arch {arch!r}")
    return decode(data, get_arch(arch))


def cmd_triage(args: argparse.Namespace) -> int:
    from harness.diff import Differ

    from .triage import format_row, list_policy, summary, triage_store
    policy = _policy(args.triage)
    if args.list:
        from arches import arch_names, get_arch
        print(list_policy(policy, [get_arch(n) for n in arch_names()]))
        return 0
    if args.dir is None:
        raise UsageError("triage needs a findings directory (or --list)")
    if not (args.dir.is_dir()):
        raise UsageError(f"{args.dir}: no findings directory there")
    rows = triage_store(args.dir, Differ(_variant(args.generic), policy, args.fidelity), _decode_raw)
    for t in rows:
        print(format_row(t))
    print(summary(rows))
    return 1 if any(t.failing for t in rows) else 0


def cmd_minimize(args: argparse.Namespace) -> int:
    from arches import get_arch
    from harness.diff import Differ, check_scenario

    from .findings import write_atomic
    from .minimize import NothingToMinimize, differ_oracle, format_result, minimize
    scenario, _ = load_input(args.file, args.arch)
    try:
        arch = get_arch(scenario.arch)
        check_scenario(scenario, arch)
    except ValueError as e:
        raise UsageError(f"{args.file}: {e}") from None
    differ = Differ(_variant(args.generic), _policy(args.triage), args.fidelity)
    if args.output is not None and args.output.resolve() == args.file.resolve():
        raise UsageError("-o must not be the input file: a finding's reproducer is never overwritten")
    try:
        result = minimize(scenario, arch, differ_oracle(differ))
    except NothingToMinimize as e:
        raise UsageError(f"{args.file}: {e}") from None
    print(format_result(result), file=sys.stderr)
    if args.output is None:
        sys.stdout.write(result.minimized.dumps())
    else:
        write_atomic(args.output, result.minimized.dumps().encode())
    return 0


def _corpus_scenarios(directory: Path, arch: str | None) -> list[Scenario]:
    """Every input of a corpus directory: scenario JSON as is, raw inputs decoded for the arch
    (--arch, or the directory's name when it is an arch, as in pfdiff-corpus/<arch>)."""
    from arches import arch_names
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    arch = arch or (directory.name if directory.name in arch_names() + ["all"] else None)
    out = []
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        data = path.read_bytes()
        try:
            if data.lstrip()[:1] == b"{":
                out.append(Scenario.loads(data.decode()))
                continue
        except (ScenarioError, UnicodeDecodeError):
            pass  # a raw input that happens to start with "{"
        if arch is None:
            raise UsageError(f"{directory}: raw inputs need --arch (directory name is not an arch)")
        out.append(_decode_raw(data, arch))
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from harness.diff import Differ
    from harness.html import FindingRow, render

    from .findings import FindingsStore, write_atomic
    from .triage import load_reproducer
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir}: no findings directory there")
    if args.arch is not None:
        _arches(args.arch) if args.arch != "all" else None
    rows = []
    for f in FindingsStore(args.dir).findings():
        scenario, error = None, ""
        try:
            scenario = load_reproducer(f, _decode_raw)
        except (ScenarioError, OSError, ValueError) as e:
            error = f"cannot load the reproducer: {e}"
        rows.append(FindingRow(f.signature, f.kind, f.count, f.first_seen, f.known, str(f.reproducer),
                               scenario, error))
    corpus = _corpus_scenarios(args.corpus, args.arch) if args.corpus else []
    differ = Differ(_variant(args.generic), _policy(args.triage), args.fidelity)
    page = render(rows, differ, corpus, title=f"pfdiff report: {args.dir}")
    try:
        write_atomic(args.html, page.encode())
        args.html.chmod(0o644)  # a report is for reading (mkstemp made it private)
    except OSError as e:
        raise UsageError(f"{args.html}: {e.strerror}") from None
    print(f"wrote {args.html} ({len(rows)} findings, {len(corpus)} corpus inputs)")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import CorpusError, from_raw, merge, prune, raw_name, to_raw
    from .encode import EncodeError
    try:
        if args.action in ("merge", "prune"):
            if args.action == "merge":
                r = merge(args.out, args.inputs, args.arch, args.generic, args.findings)
            else:
                r = prune(args.dir, args.arch, args.generic)
            print(f"{args.action}: {r.offered} input(s) offered, corpus {r.before} -> {r.after}")
            return 0
    except CorpusError as e:
        raise UsageError(str(e)) from None
    if args.action == "to-json" and args.arch != "all":
        _arches(args.arch)
    done = []  # every input converted before anything is written: all or nothing
    for p in args.files:
        try:
            if args.action == "to-json":
                done.append((p, from_raw(p.read_bytes(), args.arch).dumps().encode(), p.name + ".json"))
            else:
                data = to_raw(load_input(p, None)[0], args.target)
                done.append((p, data, raw_name(data)))
        except (CorpusError, EncodeError) as e:
            raise UsageError(f"{p}: cannot be expressed by the decoder: {e}") from None
        except OSError as e:
            raise UsageError(f"{p}: {e.strerror}") from None
    if args.output is None:
        if len(done) != 1:
            raise UsageError("several inputs need -o DIR")
        sys.stdout.buffer.write(done[0][1])
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    clash = [n for _, data, n in done if (args.output / n).exists() and (args.output / n).read_bytes() != data]
    if clash:
        raise UsageError(f"{args.output / clash[0]} exists with other contents; not overwriting")
    for _, data, name in done:
        (args.output / name).write_bytes(data)
    print(f"wrote {len(done)} file(s) to {args.output}")
    return 0


def _replay_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that re-runs scenarios through legacy and a generic variant."""
    p.add_argument("--generic", default="rfc2015", help="rfc2015 (default), fixed, or module:function")
    p.add_argument("--triage", type=Path, default=DEFAULT_TRIAGE, help="triage file (suppressions)")
    p.add_argument("--fidelity", choices=("mmu", "hooked"), help="CPU fidelity (default: the arch's first)")


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
    r.add_argument("--arch", help="arch for raw inputs")
    r.add_argument("--json", action="store_true")
    _replay_options(r)
    r.set_defaults(func=cmd_repro)

    s = sub.add_parser("show", help="lay out a scenario: VMAs, PTEs, the instruction")
    s.add_argument("file", type=Path, metavar="FILE")
    s.add_argument("--arch", help="arch for a raw input")
    s.set_defaults(func=cmd_show)

    a = sub.add_parser("arches", help="list arches, fidelity levels and generic hooks")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_arches)

    t = sub.add_parser("triage", help="re-run a findings directory: new / known / fixed / changed")
    t.add_argument("dir", type=Path, nargs="?", metavar="DIR", help="findings directory")
    _replay_options(t)
    t.add_argument("--list", action="store_true", help="list normalisations and suppressions")
    t.set_defaults(func=cmd_triage)

    m = sub.add_parser("minimize", help="a smaller scenario with the same divergence signature")
    m.add_argument("file", type=Path, metavar="FILE", help="scenario JSON or raw fuzzer input")
    m.add_argument("-o", "--output", type=Path, help="write the minimised JSON here (default stdout)")
    m.add_argument("--arch", help="arch for a raw input")
    _replay_options(m)
    m.set_defaults(func=cmd_minimize)

    h = sub.add_parser("report", help="one self-contained HTML page for a findings directory")
    h.add_argument("dir", type=Path, metavar="DIR", help="findings directory")
    h.add_argument("--html", type=Path, required=True, metavar="OUT", help="the HTML file to write")
    h.add_argument("--corpus", type=Path, metavar="DIR", help="also replay a corpus for coverage")
    h.add_argument("--arch", help="arch of raw corpus inputs (default: the corpus directory's name)")
    _replay_options(h)
    h.set_defaults(func=cmd_report)

    c = sub.add_parser("corpus", help="merge, prune, and convert corpora (libFuzzer semantics)")
    cs = c.add_subparsers(dest="action", required=True, parser_class=Parser)
    cm = cs.add_parser("merge", help="libFuzzer -merge=1: add the inputs of IN... that add coverage to OUT")
    cm.add_argument("out", type=Path, metavar="OUT")
    cm.add_argument("inputs", type=Path, nargs="+", metavar="IN")
    cm.add_argument("--findings", type=Path, help="keep divergences met while merging here")
    cp = cs.add_parser("prune", help="minimise DIR in place (merge into an empty dir, swap)")
    cp.add_argument("dir", type=Path, metavar="DIR")
    for sp in (cm, cp):
        sp.add_argument("--arch", required=True, help="an arch name or 'all'")
        sp.add_argument("--generic", default="rfc2015")
    cj = cs.add_parser("to-json", help="decode raw inputs into scenario JSON")
    cj.add_argument("files", type=Path, nargs="+", metavar="RAW")
    cj.add_argument("--arch", required=True, help="an arch name or 'all'")
    cr = cs.add_parser("to-raw", help="encode scenario JSON into raw inputs the decoder reads back")
    cr.add_argument("files", type=Path, nargs="+", metavar="JSON")
    cr.add_argument("--target", choices=("arch", "all"), default="arch",
                    help="for the scenario's own arch target (default) or the all-arches one")
    for sp in (cj, cr):
        sp.add_argument("-o", "--output", type=Path, metavar="DIR")
    c.set_defaults(func=cmd_corpus)

    from .smoke import add_parser as add_smoke_parser
    add_smoke_parser(sub)
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
    # Run the fuzz.cli module, not this __main__ copy of it: subcommand modules raise
    # fuzz.cli.UsageError, which a __main__.UsageError handler would not catch.
    from fuzz.cli import main as _main
    sys.exit(_main())
