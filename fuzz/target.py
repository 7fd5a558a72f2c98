"""The atheris fuzz target: bytes -> Scenario -> legacy vs generic -> findings store.

Run as a libFuzzer program (`python -m fuzz.target --arch=x86_64 --generic=rfc2015
--findings=DIR [libFuzzer flags] [CORPUS_DIR...]`; our options take the `=` form); `pfdiff fuzz` starts it in child processes.
A divergence is recorded, never raised, so one campaign collects every finding; a Python
exception inside the models is recorded as a harness-error finding and fuzzing goes on.

Test hooks (hidden from the CLI, for the campaign's crash-isolation tests): PFDIFF_TEST_CRASH_ON
and PFDIFF_TEST_HANG_ON each hold comma-separated hex prefixes; an input starting with one of them
makes the target call os.abort() (a native crash, as a fault inside Unicorn would be) or sleep
forever (a hang, for libFuzzer's -timeout). Unset, they cost one check per input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from harness.scenario import ScenarioError
from typing import Callable


def _prefixes(name: str) -> tuple[bytes, ...]:
    """The test-hook prefixes in environment variable `name` (comma-separated hex)."""
    value = os.environ.get(name, "")
    try:
        return tuple(bytes.fromhex(p) for p in value.split(",") if p.strip())
    except ValueError:
        raise SystemExit(f"pfdiff: {name}={value!r} is not comma-separated hex") from None


class Target:
    """TestOneInput for one arch (or all of them) and one generic variant."""

    def __init__(self, arch: str, variant: str, findings: Path, triage: Path | None,
                 fidelity: str | None = None) -> None:
        from arches import arch_names, get_arch
        from harness.diff import Differ
        from harness.generic import load_variant
        from harness.outcome import load_policy

        from .decode import decode, decode_any
        from .findings import FindingsStore

        self.names = arch_names() if arch == "all" else [arch]
        self.arches = [get_arch(n) for n in self.names]
        self.differ = Differ(load_variant(variant), load_policy(triage), fidelity)  # type: ignore[arg-type]
        self.store = FindingsStore(findings)
        self.crash_on = _prefixes("PFDIFF_TEST_CRASH_ON")
        self.hang_on = _prefixes("PFDIFF_TEST_HANG_ON")
        if len(self.arches) == 1:
            one = self.arches[0]
            self.decode: Callable[[bytes], object] = lambda data: decode(data, one)
        else:
            self.decode = lambda data: decode_any(data, self.arches)

    def __call__(self, data: bytes) -> None:
        from harness.report import full_report

        if self.crash_on and data.startswith(self.crash_on):
            os.abort()
        if self.hang_on and data.startswith(self.hang_on):
            while True:
                time.sleep(3600)
        scenario = self.decode(data)
        try:
            result = self.differ.run(scenario)  # type: ignore[arg-type]
        except ScenarioError:
            # The arch's CPU cannot express this input as a page fault (a non-canonical x86
            # address, a misaligned powerpc reservation): not a finding, as in `pfdiff smoke`.
            return
        except Exception as e:  # a model or the harness itself is wrong: keep it, keep going
            where = traceback.extract_tb(e.__traceback__)[-1]
            sig = f"{scenario.arch}: harness-error {type(e).__name__} at {Path(where.filename).name}:{where.lineno}"  # type: ignore[attr-defined]
            self.store.record(sig, "harness-error", scenario.dumps(), data,  # type: ignore[attr-defined]
                              traceback.format_exc())
            return
        d = result.divergence
        if d is not None and not self.store.count_if_known(d.signature):
            # Only a signature this process has not stored yet needs its report built.
            from arches import get_arch
            report = full_report(result, get_arch(scenario.arch))  # type: ignore[attr-defined]
            self.store.record(d.signature, "divergence", scenario.dumps(), data, report,  # type: ignore[attr-defined]
                              d.known.id if d.known else None)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--generic", default="rfc2015")
    parser.add_argument("--findings", type=Path, required=True)
    parser.add_argument("--triage", type=Path)
    parser.add_argument("--fidelity")
    ours, _ = parser.parse_known_args(argv[1:])

    import atheris

    with atheris.instrument_imports(include=["harness", "arches"]):
        target = Target(ours.arch, ours.generic, ours.findings, ours.triage, ours.fidelity)
    # Our options are single `--name=value` tokens, which libFuzzer skips (with a warning); they
    # stay in argv because -jobs/-fork re-execute argv[0] with the same arguments.
    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
