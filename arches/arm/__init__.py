"""32-bit ARM (ARMv7-A, short descriptors, LPAE off): Unicorn CPU with DFSR/DFAR and IFSR/IFAR,
the v4.0 arch/arm/mm/fault.c model (with the v7 and the v4 early-abort models), and the
conversion to the RFC's generic handler."""

from __future__ import annotations

from dataclasses import replace

from harness.arch import Arch
from harness.kernel.kernel import SigInfo
from harness.kernel.constants import PAGE_MASK, VM_FAULT_HWPOISON, VM_FAULT_HWPOISON_LARGE
from harness.kernel.kernel import MmCall
from harness.outcome import Normalisation, Outcome

from . import convert, legacy
from .cpu import CATALOGUE, LAYOUT, make_cpu


def _accounting(o: Outcome) -> Outcome:
    return replace(o, maj_flt=0, min_flt=0, perf=())


def _hmf_address(o: Outcome) -> Outcome:
    return replace(o, mm_calls=tuple(MmCall(c.address & PAGE_MASK, c.flags, c.result) for c in o.mm_calls))


def _hwpoison(o: Outcome) -> Outcome:
    if not any(c.result & (VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE) for c in o.mm_calls):
        return o
    sigs = tuple(SigInfo(0, 0, s.addr, 0) for s in o.signals)
    return replace(o, signals=sigs)


NORMALISATIONS = (
    Normalisation(
        "arm-fault-accounting",
        "v4.0 arm counts perf PAGE_FAULTS per pass after the vma lookup, and maj/min on the first "
        "pass including BADMAP/BADACCESS faults (fault.c L326-336); the generic design deliberately "
        "counts once at entry and maj/min only for completed faults, with MAJOR from any pass "
        "(what upstream adopted for every arch in v5.9, mm_account_fault).",
        _accounting),
    Normalisation(
        "arm-handle_mm_fault-address-page-masked",
        "v4.0 arm passes addr & PAGE_MASK to handle_mm_fault (fault.c L246), the generic code the "
        "raw address; the v4.0 core only uses the address at page granularity on these paths.",
        _hmf_address),
    Normalisation(
        "arm-no-memory-failure",
        "v4.0 arm cannot enable CONFIG_MEMORY_FAILURE (only x86 and powerpc select "
        "ARCH_SUPPORTS_MEMORY_FAILURE), so VM_FAULT_HWPOISON never reaches arm's handler; legacy "
        "would give SIGSEGV/MAPERR, the generic code SIGBUS; the signal kind is not compared when "
        "the core returned HWPOISON.",
        _hwpoison),
)


def _converted(k, regs, generic):
    convert.handle_abort(k, regs, generic)


ARM = Arch(
    name="arm", family="arm", word_bits=32, layout=LAYOUT, catalogue=CATALOGUE,
    make_cpu=make_cpu, fidelities=("hooked",),
    legacy=legacy.handle_abort,
    conversions={"rfc2015": _converted, "fixed": _converted},
    cpu_features=("abort_ev4",),
    generic_hooks=("stack_can_grow", "instruction_pointer", "stack_check_all_modes",
                   "kernel_retry_fatal_returns"),
    notes="ARMv7-A short descriptors (LPAE off); arch/arm/mm/fault.c + fsr-2level.c v4.0; "
          "cpu feature abort_ev4 = ARMv4 early-abort model (write bit decoded from the instruction)",
    normalisations=NORMALISATIONS,
)
