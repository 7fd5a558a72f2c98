"""Triage: re-run every finding of a findings store against the current models and triage file and
say, per finding, whether it is new, known (suppressed), fixed, or changed."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Literal

from harness.outcome import NORMALISATIONS, Normalisation, Policy
from harness.scenario import Scenario, ScenarioError

from .findings import Finding, FindingsStore

if TYPE_CHECKING:
    from harness.arch import Arch
    from harness.diff import Differ

Status = Literal["new", "known", "fixed", "changed", "error"]
# Statuses that need a human: a live, unsuppressed divergence, or a reproducer that cannot run.
FAILING: tuple[Status, ...] = ("new", "error")


@dataclass(frozen=True)
class Triaged:
    finding: Finding
    status: Status
    signature: str | None      # what the reproducer gives now (None: no divergence)
    known: str | None          # suppression id the current signature matches
    detail: str = ""

    @property
    def failing(self) -> bool:
        # A finding whose signature changed to one no suppression covers is as live as a new one.
        return self.status in FAILING or (self.status == "changed" and self.known is None)


def harness_error_signature(scenario: Scenario, exc: BaseException) -> str:
    """The signature fuzz/target.py gives a model that raised, so harness errors triage too."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{scenario.arch}: harness-error {type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"


def current_signature(differ: "Differ", scenario: Scenario) -> tuple[str | None, str | None]:
    """(signature, suppression id) of a scenario under the current code; ScenarioError propagates."""
    try:
        result = differ.run(scenario)
    except ScenarioError:
        raise
    except Exception as e:  # a model raised: that is the finding's current signature
        return harness_error_signature(scenario, e), None
    d = result.divergence
    if d is None:
        return None, None
    return d.signature, d.known.id if d.known else None


def load_reproducer(finding: Finding, decode_raw: Callable[[bytes, str], Scenario]) -> Scenario:
    """scenario.json, or else input.bin decoded for the arch the signature names."""
    if finding.reproducer.exists():
        return Scenario.loads(finding.reproducer.read_text())
    raw = finding.path / "input.bin"
    if raw.exists():
        return decode_raw(raw.read_bytes(), finding.signature.split(":")[0])
    raise ScenarioError("no scenario.json or input.bin")


def triage_one(finding: Finding, differ: "Differ", decode_raw: Callable[[bytes, str], Scenario]) -> Triaged:
    try:
        scenario = load_reproducer(finding, decode_raw)
        signature, known = current_signature(differ, scenario)
    except (ScenarioError, OSError, ValueError) as e:
        return Triaged(finding, "error", None, None, f"cannot replay: {e}")
    if signature is None:
        return Triaged(finding, "fixed", None, None)
    if signature != finding.signature:
        return Triaged(finding, "changed", signature, known)
    if known is not None:
        return Triaged(finding, "known", signature, known)
    return Triaged(finding, "new", signature, None)


def triage_store(root: Path, differ: "Differ",
                 decode_raw: Callable[[bytes, str], Scenario]) -> list[Triaged]:
    return [triage_one(f, differ, decode_raw) for f in FindingsStore(root).findings()]


def format_row(t: Triaged) -> str:
    f = t.finding
    if t.status == "known":
        head = f"known [{t.known}]"
    elif t.status == "changed":
        head = "changed" + (f" [{t.known}]" if t.known else " (unsuppressed)")
    else:
        head = t.status
    lines = [f"{head:<24} {f.signature}"]
    if t.status == "changed":
        lines.append(f"{'':<24}   now: {t.signature}")
    if t.detail:
        lines.append(f"{'':<24}   {t.detail}")
    lines.append(f"{'':<24}   {f.path}")
    return "\n".join(lines)


def summary(rows: Iterable[Triaged]) -> str:
    counts: dict[str, int] = {}
    for t in rows:
        counts[t.status] = counts.get(t.status, 0) + 1
    order = ("new", "changed", "known", "fixed", "error")
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "no findings"


def list_policy(policy: Policy, arches: Iterable["Arch"]) -> str:
    """The two lists, kept apart: normalisations (code) and suppressions (the triage file)."""
    lines = ["normalisations (permanent, intended differences; in code):"]

    def norm(n: Normalisation, where: str) -> None:
        lines.append(f"  {n.id}  [{where}]")
        lines.append(f"      {n.reason}")

    for n in NORMALISATIONS:
        norm(n, "all arches: harness/outcome.py")
    for a in arches:
        for n in a.normalisations:
            norm(n, f"{a.name}: Arch.normalisations")
    lines.append("suppressions (known divergences; in the triage file):")
    if not policy.suppressions:
        lines.append("  (none)")
    for s in policy.suppressions:
        lines.append(f"  {s.id}  {s.signature}")
        lines.append(f"      {s.note}")
    return "\n".join(lines)
