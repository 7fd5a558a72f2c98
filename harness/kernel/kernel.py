"""The simulated Linux 4.0 kernel a fault handler runs in: task, mm, mmap_sem, exception table,
signals, accounting, and the trace every call and decision is recorded in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from . import memory
from .constants import (FAULT_FLAGS, PAGE_MASK, SIGKILL, SIGNALS, SI_CODES, VM_FAULTS, describe)
from .mm import MmLimits, MmStruct, Vma


class KernelExit(Exception):
    """A path that does not return to the fault handler's caller: oops or BUG."""


class Oops(KernelExit):
    """die(): the oops path, ending in do_exit(SIGKILL)."""


class KernelBug(KernelExit):
    """BUG(), or a misuse of a kernel primitive that real kernels would corrupt or hang on."""


@dataclass(frozen=True)
class Event:
    """One entry of the trace: a `decision` of a model, a kernel `call`, or a `result`."""

    kind: str
    what: str
    detail: str = ""
    route: bool = True  # a decision that routes the fault (signatures name the last one)

    def __str__(self) -> str:
        return f"{self.what}({self.detail})" if self.detail else self.what


@dataclass(frozen=True)
class SigInfo:
    signo: int
    code: int
    addr: int
    addr_lsb: int = 0

    def __str__(self) -> str:
        name = SIGNALS.get(self.signo, str(self.signo))
        code = SI_CODES.get((self.signo, self.code), str(self.code))
        lsb = f" lsb={self.addr_lsb}" if self.addr_lsb else ""
        return f"{name} {code} addr={self.addr:#x}{lsb}"


@dataclass(frozen=True)
class MmCall:
    """One handle_mm_fault() call: its arguments and what it returned."""

    address: int
    flags: int
    result: int

    def arguments(self) -> str:
        return f"{self.address:#x}, {describe(self.flags, FAULT_FLAGS)} -> {describe(self.result, VM_FAULTS)}"

    def __str__(self) -> str:
        return f"handle_mm_fault({self.arguments()})"


@dataclass
class Task:
    """struct task_struct, reduced: pending signals, fault counters, the flags handlers test."""

    fatal_signal: bool = False
    sig_on_uaccess_error: bool = False
    in_atomic: bool = False
    maj_flt: int = 0
    min_flt: int = 0
    signals: list[SigInfo] = field(default_factory=list)
    thread: dict[str, int] = field(default_factory=dict)  # cr2 / error_code / trap_nr etc.


@dataclass
class RwSem:
    """mmap_sem, read side only (the handlers never write-lock it)."""

    readers: int = 0
    writer_holds: bool = False  # a writer holds it at fault entry: the first trylock fails


@dataclass(frozen=True)
class KernelConfig:
    """What the kernel knows about its arch, supplied by the arch's Layout."""

    task_size: int
    page_size: int = 4096


class Kernel:
    """One world. Legacy and generic handlers each get a fresh Kernel built from the same Scenario.

    Every primitive records itself in `trace`; `decide()` is how models record their decision
    points by the kernel's own labels.
    """

    def __init__(self, mm: MmStruct | None, task: Task, config: KernelConfig, *,
                 extable: frozenset[int] = frozenset(), mmap_sem_contended: bool = False,
                 inject: tuple[int | None, ...] = (), features: dict[str, bool] | None = None) -> None:
        self.mm = mm
        self.features = dict(features or {})  # boot_cpu_has(): the CPU features the kernel runs with
        self.task = task
        self.config = config
        self.extable = extable
        self.mmap_sem = RwSem(writer_holds=mmap_sem_contended)
        self.inject = inject
        self.injected = 0           # handle_mm_fault() calls made so far (the injection cursor)
        self.trace: list[Event] = []
        self.mm_calls: list[MmCall] = []
        self.perf: dict[str, int] = {}
        self.vm_events: dict[str, int] = {}
        self.fixups: int = 0
        self.swap_cache: set[int] = set()

    # -- trace ---------------------------------------------------------------------------------
    def decide(self, label: str, detail: str = "", *, route: bool = True) -> None:
        """Record a decision point of a handler model by its kernel label (bad_area, good_area...).

        Helpers reached from several routes (no_context, __bad_area_nosemaphore's branches,
        do_sigbus) pass route=False, so a divergence signature names the route that led there.
        """
        self.trace.append(Event("decision", label, detail, route))

    def call(self, what: str, detail: str = "") -> None:
        self.trace.append(Event("call", what, detail))

    def decisions(self) -> list[str]:
        return [str(e) for e in self.trace if e.kind == "decision"]

    def mark(self) -> int:
        return len(self.trace)

    def events_since(self, mark: int) -> Iterator[Event]:
        return iter(self.trace[mark:])

    # -- task ----------------------------------------------------------------------------------
    def fatal_signal_pending(self) -> bool:
        return self.task.fatal_signal

    def in_atomic(self) -> bool:
        return self.task.in_atomic

    def force_sig_info_fault(self, signo: int, code: int, address: int, addr_lsb: int = 0) -> None:
        info = SigInfo(signo, code, address, addr_lsb)
        self.call("force_sig_info_fault", str(info))
        self.task.signals.append(info)

    def force_sig(self, signo: int, code: int) -> None:
        """force_sig(): a signal without fault siginfo (si_code SI_KERNEL for SIGSEGV)."""
        info = SigInfo(signo, code, 0)
        self.call("force_sig", str(info))
        self.task.signals.append(info)

    def perf_sw_event(self, name: str) -> None:
        self.perf[name] = self.perf.get(name, 0) + 1

    def count_vm_event(self, name: str) -> None:
        self.vm_events[name] = self.vm_events.get(name, 0) + 1

    # -- mmap_sem ------------------------------------------------------------------------------
    def down_read_trylock(self) -> bool:
        if self.mmap_sem.writer_holds:
            self.call("down_read_trylock", "fails: a writer holds mmap_sem")
            return False
        self.mmap_sem.readers += 1
        self.call("down_read_trylock", "ok")
        return True

    def down_read(self) -> None:
        # The writer that made the trylock fail finishes while we sleep.
        self.mmap_sem.writer_holds = False
        self.mmap_sem.readers += 1
        self.call("down_read")

    def up_read(self) -> None:
        self.call("up_read")
        if self.mmap_sem.readers <= 0:
            raise KernelBug("up_read() of mmap_sem that is not held")
        self.mmap_sem.readers -= 1

    # -- mm ------------------------------------------------------------------------------------
    def find_vma(self, address: int) -> Vma | None:
        assert self.mm is not None
        vma = self.mm.find_vma(address)
        self.call("find_vma", f"{address:#x} -> " + (f"[{vma.start:#x}-{vma.end:#x})" if vma else "NULL"))
        return vma

    def expand_stack(self, vma: Vma, address: int) -> int:
        assert self.mm is not None
        before = vma.start
        err = self.mm.expand_stack(vma, address)
        self.call("expand_stack", f"{address:#x}: " + (f"{err}" if err else f"vm_start {before:#x} -> {vma.start:#x}"))
        return err

    def handle_mm_fault(self, vma: Vma, address: int, flags: int) -> int:
        """mm/memory.c v4.0 handle_mm_fault(), with the scenario's per-call injections."""
        if self.mmap_sem.readers <= 0:
            raise KernelBug("handle_mm_fault() called without mmap_sem held")
        result = memory.handle_mm_fault(self, vma, address, flags)
        self.mm_calls.append(MmCall(address, flags, result))
        self.call("handle_mm_fault", self.mm_calls[-1].arguments())
        return result

    def pagefault_out_of_memory(self) -> None:
        """mm/oom_kill.c v4.0: the global OOM killer picks a victim; it is not this task here."""
        self.call("pagefault_out_of_memory")

    # -- exception tables and death ------------------------------------------------------------
    def in_extable(self, ip: int) -> bool:
        """`extable` holds pages of kernel text whose every instruction has an exception-table
        entry (a uaccess routine), so each catalogue instruction there is covered."""
        return ip & PAGE_MASK in self.extable

    def search_exception_tables(self, ip: int) -> bool:
        found = self.in_extable(ip)
        self.call("search_exception_tables", f"{ip:#x} -> {'found' if found else 'none'}")
        return found

    def fixup_exception(self, ip: int) -> bool:
        """arch fixup_exception(): on an exception-table hit, regs->ip moves to the fixup."""
        found = self.in_extable(ip)
        self.call("fixup_exception", f"{ip:#x} -> {'fixup' if found else 'none'}")
        if found:
            self.fixups += 1
        return found

    def die(self, why: str) -> None:
        self.call("die", why)
        raise Oops(why)

    def BUG(self, why: str) -> None:
        self.call("BUG", why)
        raise KernelBug(why)

    def do_exit(self, signo: int = SIGKILL) -> None:
        self.call("do_exit", SIGNALS.get(signo, str(signo)))
        raise Oops(f"do_exit({SIGNALS.get(signo, signo)})")

    # -- livelock detection ---------------------------------------------------------------------
    def fingerprint(self) -> tuple:
        """The state a re-executed instruction depends on, for livelock detection."""
        mm = self.mm
        state = (tuple(sorted(mm.ptes.items())) if mm else (),
                 tuple((v.start, v.end, tuple(sorted(v.page_cache.items()))) for v in mm.vmas) if mm else (),
                 # Past the end of the injection list every call is natural: no more state.
                 min(self.injected, len(self.inject)), tuple(sorted(self.swap_cache)),
                 len(self.task.signals))
        return state


__all__ = ["Kernel", "KernelConfig", "Task", "KernelExit", "Oops", "KernelBug", "Event", "SigInfo",
           "MmCall", "MmLimits"]
