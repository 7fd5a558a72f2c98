"""Intended differences between powerpc's v4.0 handler and its generic conversion, removed before
comparing (harness.outcome.Normalisation); each says why the difference is by design."""

from __future__ import annotations

from dataclasses import replace

from harness.kernel.constants import SEGV_ACCERR, SEGV_MAPERR, SIGSEGV
from harness.kernel.kernel import SigInfo
from harness.outcome import Normalisation, Outcome

from .legacy import CMO_COUNTER

ACCOUNTING_PERF = ("PERF_COUNT_SW_PAGE_FAULTS_MAJ", "PERF_COUNT_SW_PAGE_FAULTS_MIN", CMO_COUNTER)


def _whats(o: Outcome) -> set[str]:
    return {e.what for f in o.faults for e in f.events if e.kind == "decision"}


def _sigsegv_from_core_is_maperr(o: Outcome) -> Outcome:
    if "VM_FAULT_SIGSEGV:bad_area" not in _whats(o):
        return o
    sigs = tuple(SigInfo(s.signo, SEGV_MAPERR, s.addr, s.addr_lsb)
                 if s.signo == SIGSEGV and s.code == SEGV_ACCERR else s for s in o.signals)
    return replace(o, signals=sigs)


def _retried_fault_accounting(o: Outcome) -> Outcome:
    if not _whats(o) & {"retry", "generic:retry"}:
        return o
    return replace(o, maj_flt=0, min_flt=0,
                   perf=tuple((n, v) for n, v in o.perf if n not in ACCOUNTING_PERF))


NORMALISATIONS: tuple[Normalisation, ...] = (
    Normalisation(
        "ppc-vm-fault-sigsegv-si-code",
        "v4.0 powerpc sets code = SEGV_ACCERR at good_area (fault.c L374), so a VM_FAULT_SIGSEGV "
        "returned by handle_mm_fault() (the stack guard gap) reports ACCERR only on powerpc; the "
        "generic design reports SEGV_ACCERR exactly for VM_FAULT_ACCESS and MAPERR otherwise, as "
        "every other arch does. The legacy ACCERR on that one route is counted as MAPERR.",
        _sigsegv_from_core_is_maperr),
    Normalisation(
        "ppc-retried-fault-accounting",
        "v4.0 powerpc accounts maj/min (and the CMO page_ins) on the first attempt only, with that "
        "attempt's MAJOR bit, even if the retry then fails (L447-475); the RFC deliberately accounts "
        "once at the end, MAJOR if any attempt was major, nothing on error (include/linux/fault.h: "
        "'VM_FAULT_MAJOR will be set even if there was a retry'). The CMO page_ins follows the "
        "major-fault accounting on both sides (v4.0 bumps it beside maj_flt++, L448-466; the "
        "conversion only sees the once-at-the-end result, not each attempt's MAJOR bit). For faults "
        "that went through a retry the maj_flt/min_flt counters and the MAJ/MIN/page_ins events "
        "are not compared.",
        _retried_fault_accounting),
)
