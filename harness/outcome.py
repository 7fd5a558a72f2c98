"""The Outcome of running one scenario on one side, the comparison policy (exact, minus named
normalisations and suppressions), and the divergence signature."""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from .kernel.constants import (FAULT_FLAG_EXEC, FAULT_FLAG_NO_STK_GROW, FAULT_FLAG_PROT,
                               FAULT_FLAGS, SIGNALS, SI_CODES, VM_FAULTS, describe)
from .kernel.kernel import Event, MmCall, SigInfo

DISPOSITIONS = ("completed", "signal", "killed", "fixup", "oops", "kernel_bug", "livelock")


@dataclass(frozen=True)
class FaultRecord:
    """One fault taken: the native registers and everything the handler did about it."""

    native: tuple[tuple[str, int], ...]
    events: tuple[Event, ...]

    def decisions(self) -> list[str]:
        return [str(e) for e in self.events if e.kind == "decision"]

    def route(self, prefix: str = "") -> str:
        """The last routing decision (whose label starts with prefix), without its detail."""
        for e in reversed(self.events):
            if e.kind == "decision" and e.route and e.what.startswith(prefix):
                return e.what
        return "-"


@dataclass(frozen=True)
class Outcome:
    disposition: str
    detail: str
    signals: tuple[SigInfo, ...]
    faults: tuple[FaultRecord, ...]
    mm_calls: tuple[MmCall, ...]
    maj_flt: int
    min_flt: int
    perf: tuple[tuple[str, int], ...]
    vmas: tuple[tuple[int, int, int], ...]
    ptes: tuple[tuple[int, str], ...]

    @property
    def signal(self) -> SigInfo | None:
        return self.signals[0] if self.signals else None

    def to_json(self) -> dict[str, Any]:
        sig = self.signal
        return {
            "disposition": self.disposition,
            "detail": self.detail,
            "signal": None if sig is None else {
                "signo": SIGNALS.get(sig.signo, sig.signo),
                "code": SI_CODES.get((sig.signo, sig.code), sig.code),
                "addr": hex(sig.addr), "addr_lsb": sig.addr_lsb},
            "faults": [{"native": {k: hex(v) for k, v in f.native},
                        "decisions": f.decisions()} for f in self.faults],
            "handle_mm_fault": [{"address": hex(c.address), "flags": describe(c.flags, FAULT_FLAGS),
                                 "result": describe(c.result, VM_FAULTS)} for c in self.mm_calls],
            "maj_flt": self.maj_flt, "min_flt": self.min_flt, "perf": dict(self.perf),
        }


# -- comparison policy -------------------------------------------------------------------------

@dataclass(frozen=True)
class Normalisation:
    """A permanent, intended difference removed before comparing, with the reason why."""

    id: str
    reason: str
    apply: Callable[[Outcome], Outcome]


def _mask_mm_flags(mask: int) -> Callable[[Outcome], Outcome]:
    def apply(o: Outcome) -> Outcome:
        return replace(o, mm_calls=tuple(MmCall(c.address, c.flags & ~mask, c.result) for c in o.mm_calls))
    return apply


NORMALISATIONS: tuple[Normalisation, ...] = (
    Normalisation(
        "rfc-fault-flags-unread-by-v4.0-core",
        "FAULT_FLAG_EXEC, FAULT_FLAG_PROT and FAULT_FLAG_NO_STK_GROW do not exist in v4.0; no code "
        "under handle_mm_fault() reads bits 0x80-0x200 (mm/memory.c, mm/filemap.c, mm/huge_memory.c "
        "test only WRITE, MKWRITE, ALLOW_RETRY, RETRY_NOWAIT, KILLABLE, TRIED, USER), so passing "
        "them changes nothing.",
        _mask_mm_flags(FAULT_FLAG_EXEC | FAULT_FLAG_PROT | FAULT_FLAG_NO_STK_GROW)),
)


@dataclass(frozen=True)
class Suppression:
    """A known divergence: still counted and reported, as known, under its id."""

    id: str
    signature: str  # a glob over the signature line: `*` and `?` are wildcards, `[` is literal
    note: str


@dataclass(frozen=True)
class Policy:
    normalisations: tuple[Normalisation, ...] = NORMALISATIONS
    suppressions: tuple[Suppression, ...] = ()
    extra_normalisations: tuple[str, ...] = ()  # ids of arch normalisations enabled (see below)

    def known(self, signature: str) -> Suppression | None:
        for s in self.suppressions:
            # Signatures contain "[legacy | generic]", so "[" is literal, not a character class.
            if fnmatch.fnmatchcase(signature, s.signature.replace("[", "[[]")):
                return s
        return None


class TriageError(ValueError):
    pass


def load_policy(path: Path | None, normalisations: Iterable[Normalisation] = NORMALISATIONS) -> Policy:
    """The triage file: [[suppression]] tables with id, signature (a glob) and note."""
    if path is None or not path.exists():
        return Policy(tuple(normalisations))
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TriageError(f"{path}: not valid TOML: {e}") from None
    sups = []
    for i, s in enumerate(data.get("suppression", [])):
        if not isinstance(s, dict) or not all(isinstance(s.get(k), str) for k in ("id", "signature", "note")):
            raise TriageError(f"{path}: suppression #{i + 1} needs string fields id, signature, note")
        sups.append(Suppression(s["id"], s["signature"], s["note"]))
    return Policy(tuple(normalisations), tuple(sups))


@dataclass(frozen=True)
class Divergence:
    field: str
    legacy: str
    generic: str
    signature: str
    known: Suppression | None = None


def _fields(o: Outcome) -> list[tuple[str, str]]:
    """The compared fields in order; the first that differs names the divergence."""
    sig = o.signal
    out = [("disposition", o.disposition)]
    if o.disposition == "kernel_bug":
        out.append(("kernel_bug", o.detail))
    out += [
        ("signal", SIGNALS.get(sig.signo, str(sig.signo)) if sig else "none"),
        ("signal.code", SI_CODES.get((sig.signo, sig.code), str(sig.code)) if sig else "none"),
        ("signal.addr", hex(sig.addr) if sig else "none"),
        ("signal.addr_lsb", str(sig.addr_lsb) if sig else "none"),
        ("signals", str(len(o.signals))),
        ("faults", str(len(o.faults))),
        ("handle_mm_fault.calls", str(len(o.mm_calls))),
    ]
    for i, c in enumerate(o.mm_calls):
        out += [(f"handle_mm_fault[{i}].address", hex(c.address)),
                (f"handle_mm_fault[{i}].flags", describe(c.flags, FAULT_FLAGS)),
                (f"handle_mm_fault[{i}].result", describe(c.result, VM_FAULTS))]
    out += [("maj_flt", str(o.maj_flt)), ("min_flt", str(o.min_flt)),
            ("perf", ",".join(f"{k}={v}" for k, v in o.perf) or "none"),
            ("vmas", " ".join(f"{s:#x}-{e:#x}" for s, e, _ in o.vmas)),
            ("ptes", " ".join(f"{a:#x}:{p}" for a, p in o.ptes))]
    return out


def compare(arch: str, legacy: Outcome, generic: Outcome, policy: Policy) -> Divergence | None:
    for n in policy.normalisations:
        legacy, generic = n.apply(legacy), n.apply(generic)
    lf, gf = _fields(legacy), _fields(generic)
    for (name, lv), (gname, gv) in zip(lf, gf):
        if name != gname or lv != gv:
            if name != gname:  # differing numbers of handle_mm_fault calls already differ earlier
                name, lv, gv = name, lv, f"({gname}) {gv}"
            sig = signature(arch, name, lv, gv, legacy, generic)
            return Divergence(name, lv, gv, sig, policy.known(sig))
    if len(lf) != len(gf):
        sig = signature(arch, "fields", str(len(lf)), str(len(gf)), legacy, generic)
        return Divergence("fields", str(len(lf)), str(len(gf)), sig, policy.known(sig))
    return None


def last_route(o: Outcome, prefix: str = "") -> str:
    for f in reversed(o.faults):
        r = f.route(prefix)
        if r != "-":
            return r
    return "-"


COUNTS = ("faults", "signals", "handle_mm_fault.calls", "maj_flt", "min_flt", "fields")


def signature(arch: str, name: str, lv: str, gv: str, legacy: Outcome, generic: Outcome) -> str:
    """`arch: field legacy -> generic [legacy route | generic route]`: one line per root cause.

    Field names are reduced to their kind (handle_mm_fault[1].flags -> handle_mm_fault.flags),
    addresses and counters are left out and counts reduced to their direction, so the same defect
    hit at different addresses, or after a different number of retries, is one finding.
    """
    kind = name.split("[")[0] + ("." + name.split(".")[-1] if "[" in name else "")
    if kind in ("signal.addr", "vmas", "ptes", "perf") or kind.endswith(".address"):
        values = "differs"
    elif kind in COUNTS and lv.isdigit() and gv.isdigit():
        values = "more in generic" if int(gv) > int(lv) else "fewer in generic"
    else:
        values = f"{lv} -> {gv}"
    groute = last_route(generic, "generic:")
    if groute == "-":  # the arch's own prologue decided before the generic code ran
        groute = last_route(generic)
    return f"{arch}: {kind} {values} [{last_route(legacy)} | {groute}]"
