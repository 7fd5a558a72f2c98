"""powerpc (Book3S, big-endian): ppc64 (Book3S-64 hash MMU, POWER) and ppc32 (Book3S-32, 6xx/7xx).
Unicorn CPU in hooked mode deriving DSISR/DAR/SRR1 by Power ISA Book III-S, the v4.0
arch/powerpc/mm/fault.c model, and powerpc's conversion to the RFC's generic handler."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from harness.arch import Arch, Fidelity

from . import convert, legacy
from .cpu import CATALOGUE_PPC32, CATALOGUE_PPC64, LAYOUT_PPC32, LAYOUT_PPC64, PpcCpu
from .legacy import PpcParams
from .normalise import NORMALISATIONS

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel

    from .cpu import PpcFault

PARAMS_PPC64 = PpcParams("ppc64", 64, LAYOUT_PPC64.task_size, noexecute=True, config_6xx=False)
PARAMS_PPC32 = PpcParams("ppc32", 32, LAYOUT_PPC32.task_size, noexecute=False, config_6xx=True)

NOTES = (
    "Book3S, big-endian (the classic v4.0 configuration). Hooked fidelity only: DSISR/DAR/SRR1 are "
    "derived from Unicorn's access kind and fault class by Power ISA Book III-S; ppc64 runs in "
    "real mode with MSR[HV] patched through the context blob and PR=0 (POWER10 forces IR/DR with "
    "PR=1), the reported MSR/SRR1 are Linux's MSR_USER64/MSR_KERNEL. ppc64 = POWER (CPU_FTR_NOEXECUTE, "
    "per-page no-execute); ppc32 = 6xx/7xx (no NOEXECUTE, no per-page exec control, CONFIG_6xx odd-DSISR "
    "check). cpu feature 'cmo' = CONFIG_PPC_SMLPAR with FW_FEATURE_CMO: major faults also count in "
    "the hypervisor's lppaca.page_ins (recorded as the pseudo perf counter 'lppaca.page_ins'). "
    "Not modelled: BookE/40x/44x (ESR, ISI error_code 0), 8xx (guarded-storage check), ICSWX, "
    "DABR/do_break, low_hash_fault, SLB faults.")


def _legacy(p: PpcParams, k: "Kernel", regs: "PpcFault") -> None:
    legacy.handle_page_fault(k, p, regs)


def _converted(p: PpcParams, k: "Kernel", regs: "PpcFault", generic: "GenericPageFault") -> None:
    convert.converted_handle_page_fault(k, p, regs, generic)


def _arch(name: str, p: PpcParams, catalogue, layout) -> Arch:
    fidelities: tuple[Fidelity, ...] = ("hooked",)
    return Arch(
        name=name, family="powerpc", word_bits=p.bits, layout=layout, catalogue=catalogue,
        make_cpu=partial(PpcCpu, p.bits), fidelities=fidelities,
        legacy=partial(_legacy, p),
        conversions={"rfc2015": partial(_converted, p), "fixed": partial(_converted, p)},
        cpu_features=("cmo",),
        generic_hooks=("stack_can_grow", "instruction_pointer", "access_error", "stack_check_all_modes"),
        notes=NOTES,
        normalisations=NORMALISATIONS)


PPC64 = _arch("ppc64", PARAMS_PPC64, CATALOGUE_PPC64, LAYOUT_PPC64)
PPC32 = _arch("ppc32", PARAMS_PPC32, CATALOGUE_PPC32, LAYOUT_PPC32)
