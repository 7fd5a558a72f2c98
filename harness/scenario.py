"""The Scenario record (one instruction, one arch, one simulated kernel state) and its versioned
JSON form, the corpus-of-record format users send each other."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Literal, Mapping

from .kernel.constants import PAGE_SIZE, VM_FAULTS, VM_FLAGS, flag_names, flags_from_names
from .kernel.mm import FileBacking, Pte

FORMAT = "pfdiff/1"
Mode = Literal["user", "kernel"]
PTE_BITS = ("write", "user", "exec", "dirty", "young", "rsvd")
PTE_STATES = ("present", "swap", "hwpoison", "protnone")
CACHE_STATES = ("cached", "absent", "locked")


class ScenarioError(ValueError):
    """A scenario that is malformed or does not fit its arch; the message is one line."""


@dataclass(frozen=True)
class VmaSpec:
    start: int
    end: int
    flags: int
    file: FileBacking | None = None
    pgoff: int | None = None  # None: anon default (start >> PAGE_SHIFT), file default 0


@dataclass(frozen=True)
class TaskSpec:
    """Kernel conditions at the time of the fault."""

    fatal_signal: bool = False          # SIGKILL pending (fatal_signal_pending())
    sig_on_uaccess_error: bool = False  # thread_info flag set by vsyscall emulation
    in_atomic: bool = False             # in_atomic() / pagefault_disable()
    no_mm: bool = False                 # kernel thread: current->mm == NULL
    mmap_sem_contended: bool = False    # a writer holds mmap_sem: down_read_trylock() fails once
    extable: bool = False               # the kernel-mode instruction has an exception-table entry
    stack_rlimit: int = 8 << 20


@dataclass(frozen=True)
class Scenario:
    arch: str
    mode: Mode
    insn: str
    addr: int
    sp: int
    vmas: tuple[VmaSpec, ...] = ()
    ptes: tuple[tuple[int, Pte], ...] = ()
    task: TaskSpec = field(default_factory=TaskSpec)
    cpu: tuple[tuple[str, bool], ...] = ()
    inject: tuple[int | None, ...] = ()

    @property
    def cpu_features(self) -> dict[str, bool]:
        return dict(self.cpu)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "arch": self.arch,
            "mode": self.mode,
            "insn": self.insn,
            "addr": hex(self.addr),
            "sp": hex(self.sp),
            "vmas": [_vma_to_json(v) for v in self.vmas],
            "ptes": [_pte_to_json(a, p) for a, p in self.ptes],
            "task": {f.name: (hex(getattr(self.task, f.name)) if f.name == "stack_rlimit"
                              else getattr(self.task, f.name)) for f in fields(TaskSpec)},
            "cpu": dict(self.cpu),
            "inject": [None if i is None else flag_names(i, VM_FAULTS) for i in self.inject],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"

    @staticmethod
    def from_json(data: Any) -> "Scenario":
        return _parse(data)

    @staticmethod
    def loads(text: str) -> "Scenario":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return _parse(data)

    def summary(self) -> str:
        return f"{self.arch} {self.mode} {self.insn} addr={self.addr:#x} sp={self.sp:#x}"


def _vma_to_json(v: VmaSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"start": hex(v.start), "end": hex(v.end), "flags": flag_names(v.flags, VM_FLAGS)}
    if v.file is not None:
        out["file"] = {"size": hex(v.file.size), "cache": v.file.cache}
    if v.pgoff is not None:
        out["pgoff"] = hex(v.pgoff)
    return out


def _pte_to_json(addr: int, p: Pte) -> dict[str, Any]:
    return {"addr": hex(addr), "state": p.state, "bits": [b for b in PTE_BITS if getattr(p, b)]}


# -- parsing: every error is a ScenarioError naming the field --------------------------------------

def _int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise ScenarioError(f"{what}: expected a hex string, got {v!r}")
    if isinstance(v, int):
        value = v
    elif isinstance(v, str):
        try:
            value = int(v, 0)
        except ValueError:
            raise ScenarioError(f"{what}: not a number: {v!r}") from None
    else:
        raise ScenarioError(f"{what}: expected a hex string, got {type(v).__name__}")
    if not 0 <= value < 1 << 64:
        raise ScenarioError(f"{what}: {v!r} is outside 0..2^64-1")
    return value


def _obj(v: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise ScenarioError(f"{what}: expected an object")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise ScenarioError(f"{what}: expected a list")
    return v


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise ScenarioError(f"{what}: expected true or false")
    return v


def _names(v: Any, table: Mapping[str, int], what: str) -> int:
    items = _list(v, what)
    if not all(isinstance(i, str) for i in items):
        raise ScenarioError(f"{what}: expected a list of names")
    try:
        return flags_from_names(items, table, what)
    except ValueError as e:
        raise ScenarioError(str(e)) from None


def _check_keys(obj: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise ScenarioError(f"{what}: unknown field {unknown[0]!r}")


def _parse(data: Any) -> Scenario:
    d = _obj(data, "scenario")
    if d.get("format") != FORMAT:
        raise ScenarioError(f"format: expected {FORMAT!r}, got {d.get('format')!r}")
    _check_keys(d, ("format", "arch", "mode", "insn", "addr", "sp", "vmas", "ptes", "task", "cpu",
                    "inject", "comment"), "scenario")
    for key in ("arch", "mode", "insn", "addr", "sp"):
        if key not in d:
            raise ScenarioError(f"missing field {key!r}")
    if not isinstance(d["arch"], str) or not isinstance(d["insn"], str):
        raise ScenarioError("arch and insn must be strings")
    if d["mode"] not in ("user", "kernel"):
        raise ScenarioError(f"mode: expected 'user' or 'kernel', got {d['mode']!r}")
    vmas = []
    for i, v in enumerate(_list(d.get("vmas", []), "vmas")):
        v = _obj(v, f"vmas[{i}]")
        _check_keys(v, ("start", "end", "flags", "file", "pgoff"), f"vmas[{i}]")
        file = None
        if v.get("file") is not None:
            f = _obj(v["file"], f"vmas[{i}].file")
            _check_keys(f, ("size", "cache"), f"vmas[{i}].file")
            cache = f.get("cache", "cached")
            if cache not in CACHE_STATES:
                raise ScenarioError(f"vmas[{i}].file.cache: expected one of {', '.join(CACHE_STATES)}")
            file = FileBacking(_int(f.get("size", 0), f"vmas[{i}].file.size"), cache)
        pgoff = None if v.get("pgoff") is None else _int(v["pgoff"], f"vmas[{i}].pgoff")
        vmas.append(VmaSpec(_int(v.get("start"), f"vmas[{i}].start"), _int(v.get("end"), f"vmas[{i}].end"),
                            _names(v.get("flags", []), VM_FLAGS, "VM flag"), file, pgoff))
    ptes = []
    for i, p in enumerate(_list(d.get("ptes", []), "ptes")):
        p = _obj(p, f"ptes[{i}]")
        _check_keys(p, ("addr", "state", "bits"), f"ptes[{i}]")
        state = p.get("state", "present")
        if state not in PTE_STATES:
            raise ScenarioError(f"ptes[{i}].state: expected one of {', '.join(PTE_STATES)}")
        bits = _list(p.get("bits", []), f"ptes[{i}].bits")
        bad = [b for b in bits if b not in PTE_BITS]
        if bad:
            raise ScenarioError(f"ptes[{i}].bits: unknown bit {bad[0]!r}")
        ptes.append((_int(p.get("addr"), f"ptes[{i}].addr"),
                     Pte(state, **{b: b in bits for b in PTE_BITS})))
    t = _obj(d.get("task", {}), "task")
    _check_keys(t, [f.name for f in fields(TaskSpec)], "task")
    task_kw: dict[str, Any] = {}
    for f in fields(TaskSpec):
        if f.name in t:
            task_kw[f.name] = (_int(t[f.name], "task.stack_rlimit") if f.name == "stack_rlimit"
                               else _bool(t[f.name], f"task.{f.name}"))
    cpu = _obj(d.get("cpu", {}), "cpu")
    cpu_items = tuple(sorted((str(k), _bool(v, f"cpu.{k}")) for k, v in cpu.items()))
    inject = []
    for i, item in enumerate(_list(d.get("inject", []), "inject")):
        inject.append(None if item is None else _names(item, VM_FAULTS, "VM_FAULT code"))
    scenario = Scenario(d["arch"], d["mode"], d["insn"], _int(d["addr"], "addr"), _int(d["sp"], "sp"),
                        tuple(vmas), tuple(ptes), TaskSpec(**task_kw), cpu_items, tuple(inject))
    validate_layout(scenario)
    return scenario


def validate_layout(s: Scenario) -> None:
    """Arch-independent consistency: page-aligned, ordered, non-overlapping VMAs; aligned PTEs."""
    prev_end = 0
    for i, v in enumerate(s.vmas):
        if v.start % PAGE_SIZE or v.end % PAGE_SIZE:
            raise ScenarioError(f"vmas[{i}]: start and end must be page-aligned")
        if v.start >= v.end:
            raise ScenarioError(f"vmas[{i}]: start {v.start:#x} is not below end {v.end:#x}")
        if v.start < prev_end:
            raise ScenarioError(f"vmas[{i}]: overlaps or is out of order with the VMA before it")
        prev_end = v.end
    seen = set()
    for i, (addr, _) in enumerate(s.ptes):
        if addr % PAGE_SIZE:
            raise ScenarioError(f"ptes[{i}].addr {addr:#x} is not page-aligned")
        if addr in seen:
            raise ScenarioError(f"ptes[{i}].addr {addr:#x} appears twice")
        seen.add(addr)


__all__ = ["Scenario", "ScenarioError", "TaskSpec", "VmaSpec", "FORMAT"]
