"""arm64: Unicorn CPU (MMU mode with the ESR/FAR the emulated CPU produces; hooked mode), the v4.0
arch/arm64/mm/fault.c (+ entry.S) model, and arm64's conversion to the RFC's generic handler."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import capstone

from harness.arch import Arch
from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_TRIED, SEGV_MAPERR, SIGBUS, SIGSEGV,
                                      VM_FAULT_HWPOISON, VM_FAULT_HWPOISON_LARGE)
from harness.kernel.kernel import MmCall, SigInfo
from harness.outcome import Normalisation

from . import convert, legacy
from .cpu import CATALOGUE, LAYOUT, make_cpu

if TYPE_CHECKING:
    from harness.outcome import Outcome


def _drop_accounting(o: "Outcome") -> "Outcome":
    return replace(o, maj_flt=0, min_flt=0, perf=())


def _mask_tried(o: "Outcome") -> "Outcome":
    return replace(o, mm_calls=tuple(MmCall(c.address, c.flags & ~FAULT_FLAG_TRIED, c.result) for c in o.mm_calls))


def _hwpoison_is_sigbus(o: "Outcome") -> "Outcome":
    if not o.mm_calls or not o.mm_calls[-1].result & (VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE):
        return o
    sigs = tuple(SigInfo(SIGBUS, BUS_ADRERR, s.addr, s.addr_lsb) if (s.signo, s.code) == (SIGSEGV, SEGV_MAPERR)
                 else s for s in o.signals)
    return replace(o, signals=sigs)


NORMALISATIONS = (
    Normalisation(
        "arm64-fault-accounting",
        "The generic handler deliberately adopts x86's accounting (perf PAGE_FAULTS once, before the "
        "lock; maj/min once, at the end, only on success, MAJOR ORed across a retry). arm64 v4.0 counts "
        "perf PAGE_FAULTS after each __do_page_fault pass (twice on a retry, also for BADMAP/BADACCESS "
        "and errors, never for in_atomic/no-mm/trylock-failure), and maj/min on the first pass only, "
        "whatever the result (fault.c L259-275). Counters only: no effect on signals, PTEs or VMAs.",
        _drop_accounting),
    Normalisation(
        "arm64-retry-without-FAULT_FLAG_TRIED",
        "arm64 v4.0 retries with ALLOW_RETRY cleared but without FAULT_FLAG_TRIED (fault.c L281); the "
        "generic handler sets TRIED as x86 does. The only reader of TRIED under handle_mm_fault() in "
        "v4.0 is filemap_fault() (mm/filemap.c L1887), where it only skips do_async_mmap_readahead(), "
        "a readahead heuristic: same result, PTEs and accounting.",
        _mask_tried),
    Normalisation(
        "arm64-v4.0-no-memory-failure",
        "arm64 v4.0 does not select ARCH_SUPPORTS_MEMORY_FAILURE, so handle_mm_fault() cannot return "
        "VM_FAULT_HWPOISON* there (no hwpoison swap entries exist); the simulated core still can. For "
        "that impossible result legacy's catch-all gives SIGSEGV/SEGV_MAPERR (fault.c L319-327) while "
        "the RFC's contract says HWPOISON always comes with VM_FAULT_SIGBUS. Only when the last "
        "handle_mm_fault() returned HWPOISON, a user SIGSEGV/SEGV_MAPERR is read as SIGBUS/BUS_ADRERR.",
        _hwpoison_is_sigbus),
)


ARM64 = Arch(
    name="arm64",
    family="arm64",
    word_bits=64,
    layout=LAYOUT,
    catalogue=CATALOGUE,
    make_cpu=make_cpu,
    fidelities=("mmu", "hooked"),
    legacy=legacy.handle,
    conversions={"rfc2015": convert.handle, "fixed": convert.handle},
    cpu_features=(),
    generic_hooks=("stack_can_grow", "instruction_pointer", "access_error", "kernel_retry_fatal_returns"),
    notes=("arch/arm64/mm/fault.c + kernel/entry.S v4.0; mmu (ESR/FAR from the emulated CPU) and hooked "
           "(ESR derived per the ARM ARM) agree on every tested scenario; 39-bit VA, 4K pages; the "
           "conversion is this project's (the RFC posted x86 only)"),
    normalisations=NORMALISATIONS,
    capstone=(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM),
)
