"""riscv64: Unicorn Sv39 CPU (scause/stval/sepc/sstatus), the first upstream riscv handler
(arch/riscv/mm/fault.c as added for v4.15) and its conversion to the RFC's generic handler."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from harness.arch import Arch, Fidelity
from harness.kernel.constants import (SEGV_MAPERR, SIGSEGV, VM_FAULT_ERROR, VM_FAULT_OOM,
                                      VM_FAULT_SIGBUS)
from harness.kernel.kernel import SigInfo
from harness.outcome import Normalisation, Outcome

from . import convert, legacy
from .cpu import CATALOGUE, LAYOUT, RiscvHookedCpu, RiscvMmuCpu

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel

    from .cpu import RiscvFault


def _make_cpu(fidelity: Fidelity):
    return RiscvMmuCpu() if fidelity == "mmu" else RiscvHookedCpu()


def _converted(k: "Kernel", regs: "RiscvFault", generic: "GenericPageFault") -> None:
    convert.converted_do_page_fault(k, regs, generic)


def _bug_on_unexpected_error(o: Outcome) -> Outcome:
    """Both sides: a fault that ended on a handle_mm_fault() result with VM_FAULT_ERROR bits other
    than OOM and SIGBUS (VM_FAULT_SIGSEGV from the stack guard page, HWPOISON) is where the v4.15
    handler BUG()s; whatever the generic handler did there is reported as that same BUG."""
    if o.disposition == "completed" or not o.mm_calls or not o.faults:
        return o
    last = o.mm_calls[-1].result
    called_last = any(e.kind == "call" and e.what == "handle_mm_fault" for e in o.faults[-1].events)
    if not called_last or not last & VM_FAULT_ERROR or last & (VM_FAULT_OOM | VM_FAULT_SIGBUS):
        return o
    return replace(o, disposition="kernel_bug", detail=legacy.BUG_UNEXPECTED_ERROR, signals=())


def _vmalloc_user_unbalanced_up_read(o: Outcome) -> Outcome:
    """Legacy side: the user vmalloc-range path's up_read of an mmap_sem it never took (a kernel
    bug outcome in the simulated kernel) is replaced by what the C does next: SIGSEGV MAPERR."""
    if o.disposition != "kernel_bug" or not o.faults:
        return o
    f = o.faults[-1]
    if "vmalloc_fault:user_bad_area" not in f.decisions():
        return o
    stval = dict(f.native)["stval"]
    return replace(o, disposition="signal", detail="", signals=(SigInfo(SIGSEGV, SEGV_MAPERR, stval),))


NORMALISATIONS = (
    Normalisation(
        "riscv-bug-on-vm-fault-sigsegv",
        "v4.15 riscv do_page_fault() BUG()s on any VM_FAULT_ERROR that is not OOM or SIGBUS "
        "(VM_FAULT_SIGSEGV from the stack guard page, HWPOISON; fact sheet §5.2 row 12, L132-138). "
        "The generic handler defines a signal for every error bit by design (upstream riscv did the "
        "same in 0c710050c47d, 2024). Both sides are reported as the legacy BUG so the rest of the "
        "outcome (calls, accounting, PTEs) is still compared.",
        _bug_on_unexpected_error),
    Normalisation(
        "riscv-vmalloc-user-unbalanced-up_read",
        "v4.15 riscv sends a user-mode fault in the vmalloc range to bad_area, whose up_read() "
        "releases an mmap_sem that was never taken (L61-62, L179-180). The conversion's prologue "
        "has no lock to drop. The legacy outcome is compared as the SIGSEGV MAPERR it goes on to send.",
        _vmalloc_user_unbalanced_up_read),
)

RISCV64 = Arch(
    name="riscv64", family="riscv", word_bits=64, layout=LAYOUT, catalogue=CATALOGUE,
    make_cpu=_make_cpu, fidelities=("mmu", "hooked"),
    legacy=legacy.do_page_fault,
    conversions={"rfc2015": _converted, "fixed": _converted},
    cpu_features=("sum",),
    generic_hooks=("stack_can_grow", "instruction_pointer", "access_error", "plain_down_read",
                   "account_pass"),
    notes="arch/riscv/mm/fault.c as first merged (v4.15, blob 148c98ca9b45), postdating the RFC; "
          "Sv39; cpu feature `sum` = sstatus.SUM set for kernel-mode accesses (uaccess sections)",
    normalisations=NORMALISATIONS,
)
