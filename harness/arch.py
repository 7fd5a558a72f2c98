"""The one interface every arch implements (arches/<name>/ fills it in; the harness only sees this).

An arch supplies: an emulated CPU that runs a catalogue instruction against the current page tables
and reports the NativeFault the hardware would hand the kernel; its legacy v4.0 handler model; and
its conversion to the generic handler, per generic variant.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Protocol, Sequence

from .kernel.mm import Pte

if TYPE_CHECKING:
    from .generic import GenericPageFault
    from .kernel.kernel import Kernel
    from .outcome import Normalisation

Fidelity = Literal["hooked", "mmu"]
Access = Literal["read", "write", "rmw", "fetch"]


@dataclass(frozen=True)
class NativeFault:
    """What the CPU hands the kernel. Subclasses add the arch's registers by their manual names.

    `pc` is where the exception was taken (the faulting instruction, or the fetch target),
    `insn` the instruction bytes at the faulting instruction (what is_prefetch()/store_updates_sp()
    read), `user` whether the CPU was in user mode.
    """

    pc: int
    insn: bytes
    user: bool

    def registers(self) -> dict[str, int]:
        """Architectural fields by name, for reports, traces and livelock detection."""
        out: dict[str, int] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                out[f.name] = int(v)
            elif isinstance(v, int):
                out[f.name] = v
        return out


@dataclass(frozen=True)
class Instruction:
    """One catalogue entry: real encodings, what it accesses, and in which modes it is meaningful."""

    name: str
    encoding: bytes
    access: Access
    summary: str
    modes: tuple[str, ...] = ("user", "kernel")
    width: int = 8  # bytes accessed by the first access at `addr`


@dataclass(frozen=True)
class CpuRun:
    """One execution request: the instruction, the mode and the page tables as the kernel left them."""

    insn: str
    mode: str
    addr: int
    sp: int
    ptes: Mapping[int, Pte]
    features: Mapping[str, bool]


class Cpu(Protocol):
    """An emulated CPU of one arch at one fidelity level; long-lived, reset per run."""

    fidelity: Fidelity

    def execute(self, run: CpuRun) -> NativeFault | None:
        """Run the instruction; the fault the CPU raised, or None if it completed.

        Raises harness.scenario.ScenarioError (or a subclass) for a run the CPU cannot express
        faithfully (an address the arch cannot fault on with a page fault, say)."""
        ...


@dataclass(frozen=True)
class Layout:
    """Where things live in this arch's address space, for the kernel, the decoder and `show`."""

    task_size: int          # first address that is not user space (TASK_SIZE_MAX)
    user_text: int          # page holding the instruction in user mode
    kernel_text: int        # page holding the instruction in kernel mode
    user_top: int           # a typical top of the user stack
    mmap_min_addr: int = 65536
    page_size: int = 4096
    kernel_probe: int | None = None  # an unmapped kernel address for kernel-address faults
                                     # (default: 4 MiB below kernel_text)

    @property
    def kernel_fault_address(self) -> int:
        return self.kernel_probe if self.kernel_probe is not None else self.kernel_text - (4 << 20)


# The arch's legacy handler and its conversion both act on the Kernel they are given.
LegacyHandler = Callable[["Kernel", NativeFault], None]
ConvertedHandler = Callable[["Kernel", NativeFault, "GenericPageFault"], None]


@dataclass(frozen=True)
class Arch:
    """An arch as the registry lists it. `conversions` maps a generic-variant name to the arch's
    converted handler; variants without an entry use the one named by `default_conversion`."""

    name: str
    family: str
    word_bits: int
    layout: Layout
    catalogue: Mapping[str, Instruction]
    make_cpu: Callable[[Fidelity], Cpu]
    fidelities: tuple[Fidelity, ...]
    legacy: LegacyHandler
    conversions: Mapping[str, ConvertedHandler]
    default_conversion: str = "fixed"
    cpu_features: tuple[str, ...] = ()
    generic_hooks: tuple[str, ...] = ()
    notes: str = ""
    normalisations: tuple["Normalisation", ...] = ()
    capstone: tuple[int, int] | None = None  # (CS_ARCH_*, CS_MODE_*) for `pfdiff show`  # intended differences, each with its reason

    def conversion(self, variant: str) -> ConvertedHandler:
        return self.conversions.get(variant) or self.conversions[self.default_conversion]

    def instructions_for(self, mode: str) -> Sequence[Instruction]:
        return [i for i in self.catalogue.values() if mode in i.modes]
