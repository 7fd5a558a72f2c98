"""x86 (x86_64 and i386): Unicorn CPU with the #PF error code, the v4.0 arch/x86/mm/fault.c model,
and the RFC's x86 conversion."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import capstone

from harness.arch import Arch, Fidelity

from . import convert, legacy
from .cpu import CATALOGUE_I386, CATALOGUE_X86_64, LAYOUT_I386, LAYOUT_X86_64, X86Cpu
from .legacy import X86Params

if TYPE_CHECKING:
    from harness.generic import GenericPageFault
    from harness.kernel import Kernel

    from .cpu import X86Fault

PARAMS_X86_64 = X86Params("x86_64", 8, LAYOUT_X86_64.task_size, LAYOUT_X86_64.kernel_text,
                          vmalloc_start=0xFFFFC90000000000, vmalloc_end=0xFFFFE8FFFFFFFFFF)
# i386 with the default 3G/1G split; VMALLOC_START/END depend on the memory size, these are a
# typical 896 MiB lowmem layout.
PARAMS_I386 = X86Params("i386", 4, LAYOUT_I386.task_size, LAYOUT_I386.kernel_text,
                        vmalloc_start=0xF8800000, vmalloc_end=0xFF7FE000,
                        # Where the decoder aims kernel-address faults, so IDT entry 6 is reachable.
                        f00f_idt=LAYOUT_I386.kernel_fault_address + 0x1000)


def _legacy(p: X86Params, k: "Kernel", regs: "X86Fault") -> None:
    legacy.do_page_fault(k, p, regs, smap=k.features.get("smap", False))


def _converted(p: X86Params, finish: convert.ResultMapper, k: "Kernel", regs: "X86Fault",
               generic: "GenericPageFault") -> None:
    convert.converted_do_page_fault(k, p, regs, k.features.get("smap", False), generic, finish)


def _arch(name: str, p: X86Params, catalogue, layout, fidelities: tuple[Fidelity, ...],
          features: tuple[str, ...]) -> Arch:
    return Arch(
        name=name, family="x86", word_bits=8 * p.word_bytes, layout=layout, catalogue=catalogue,
        make_cpu=partial(X86Cpu, name), fidelities=fidelities,
        legacy=partial(_legacy, p),
        conversions={"rfc2015": partial(_converted, p, convert.finish_rfc2015),
                     "fixed": partial(_converted, p, convert.finish_fixed)},
        cpu_features=features,
        generic_hooks=("stack_can_grow", "instruction_pointer"),
        notes="the RFC's own conversion; arch/x86/mm/fault.c v4.0",
        capstone=(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if p.word_bytes == 8 else capstone.CS_MODE_32))


X86_64 = _arch("x86_64", PARAMS_X86_64, CATALOGUE_X86_64, LAYOUT_X86_64, ("mmu", "hooked"),
               ("nx", "smep", "smap", "ac"))
I386 = _arch("i386", PARAMS_I386, CATALOGUE_I386, LAYOUT_I386, ("hooked",),
             ("nx", "smep", "smap", "ac", "f00f"))  # f00f: X86_BUG_F00F (Pentium)
