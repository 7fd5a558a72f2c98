"""A tiny arch for tests of the tools around the harness (triage, minimise, encode, HTML report):
a Python "CPU" that faults on a missing or insufficient PTE, and a planted conversion bug.

The legacy side and the generic side both run the RFC's generic handler; only the generic side's
result mapping is wrong (VM_FAULT_SIGBUS becomes SIGSEGV/SEGV_MAPERR), so a scenario diverges
exactly when handle_mm_fault() returns SIGBUS (an injection, or a file page beyond EOF). That
makes divergences predictable without depending on any real arch's model.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.arch import Arch, CpuRun, Instruction, Layout, NativeFault
from harness.generic import rfc2015
from harness.kernel.constants import (BUS_ADRERR, FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_EXEC,
                                      FAULT_FLAG_KILLABLE, FAULT_FLAG_USER, FAULT_FLAG_WRITE,
                                      PAGE_MASK, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV,
                                      VM_FAULT_ACCESS, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV)

LAYOUT = Layout(task_size=1 << 47, user_text=0x400000, kernel_text=0xFFFFFFFF81000000,
                user_top=0x7FFFFFFFF000)

CATALOGUE = {i.name: i for i in (
    Instruction("ld8", bytes.fromhex("488b07"), "read", "mov rax, [rdi]", width=8),
    Instruction("ld1", bytes.fromhex("8a07"), "read", "mov al, [rdi]", width=1),
    Instruction("ldm", bytes.fromhex("f3a5aaaa"), "read", "rep movsd (complex)", width=8),
    Instruction("st8", bytes.fromhex("488907"), "write", "mov [rdi], rax", width=8),
    Instruction("st1", bytes.fromhex("8807"), "write", "mov [rdi], al", width=1),
    Instruction("jmp", bytes.fromhex("ffe7"), "fetch", "jmp rdi", width=4, modes=("user",)),
)}


@dataclass(frozen=True)
class FakeFault(NativeFault):
    addr: int
    write: bool
    fetch: bool
    sp: int


class FakeCpu:
    fidelity = "hooked"

    def __init__(self, fidelity: str = "hooked") -> None:
        self.fidelity = fidelity  # type: ignore[assignment]

    def execute(self, run: CpuRun) -> FakeFault | None:
        spec = CATALOGUE[run.insn]
        pte = run.ptes.get(run.addr & PAGE_MASK)
        write, fetch = spec.access in ("write", "rmw"), spec.access == "fetch"
        ok = (pte is not None and pte.present and (pte.write or not write) and (pte.exec or not fetch)
              and (pte.user or run.mode == "kernel"))
        if ok:
            return None
        pc = LAYOUT.user_text if run.mode == "user" else LAYOUT.kernel_text
        return FakeFault(pc, spec.encoding, run.mode == "user", run.addr, write, fetch, run.sp)


@dataclass(frozen=True)
class Hooks:
    def stack_can_grow(self, regs: FakeFault, flags: int, address: int, vma: object) -> bool:
        return address + 65536 >= regs.sp

    def instruction_pointer(self, regs: FakeFault) -> int:
        return regs.pc


def _flags(f: FakeFault) -> int:
    return (FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | (FAULT_FLAG_USER if f.user else 0)
            | (FAULT_FLAG_WRITE if f.write else 0) | (FAULT_FLAG_EXEC if f.fetch else 0))


def _finish(k, f: FakeFault, r: int, *, buggy: bool) -> None:
    if r & VM_FAULT_SIGBUS and not buggy:
        k.decide("fake:legacy:sigbus")
        k.force_sig_info_fault(SIGBUS, BUS_ADRERR, f.addr)
    elif r & (VM_FAULT_SIGSEGV | VM_FAULT_SIGBUS):
        k.decide("fake:convert:sigsegv" if buggy else "fake:legacy:sigsegv")
        k.force_sig_info_fault(SIGSEGV, SEGV_ACCERR if r & VM_FAULT_ACCESS else SEGV_MAPERR, f.addr)


def legacy(k, f: FakeFault) -> None:
    k.decide("fake:legacy:entry", route=False)
    _finish(k, f, rfc2015.generic_page_fault(k, Hooks(), f, _flags(f), f.addr), buggy=False)


def converted(k, f: FakeFault, generic) -> None:
    k.decide("fake:convert:entry", route=False)
    _finish(k, f, generic(k, Hooks(), f, _flags(f), f.addr), buggy=True)


FAKE = Arch(name="fake64", family="fake", word_bits=64, layout=LAYOUT, catalogue=CATALOGUE,
            make_cpu=FakeCpu, fidelities=("hooked",), legacy=legacy,  # type: ignore[arg-type]
            conversions={"rfc2015": converted}, default_conversion="rfc2015",  # type: ignore[dict-item]
            cpu_features=("nx", "smap"))


def resolve(name: str) -> Arch:
    if name != FAKE.name:
        raise ValueError(f"unknown arch {name!r}")
    return FAKE


def differ(variant: str = "rfc2015", policy=None):
    from harness.diff import Differ
    from harness.generic import load_variant
    return Differ(load_variant(variant), policy, resolve=resolve)
