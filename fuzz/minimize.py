"""Structure-aware minimisation: shrink a diverging Scenario by passes over its parts, keeping each
step only if the divergence signature stays exactly the same, until no pass makes progress."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Callable, Iterator

from harness.kernel.constants import PAGE_MASK, PAGE_SIZE
from harness.scenario import PTE_BITS, Scenario, ScenarioError, TaskSpec, VmaSpec, validate_layout

from .triage import current_signature

if TYPE_CHECKING:
    from harness.arch import Arch
    from harness.diff import Differ

Oracle = Callable[[Scenario], "str | None"]
TASK_DEFAULTS = TaskSpec()


class NothingToMinimize(ValueError):
    """The scenario does not diverge (nor raise), so there is no signature to keep."""


@dataclass(frozen=True)
class Size:
    """What a reader has to take in: the counts the passes reduce, and the JSON length."""

    vmas: int
    ptes: int
    flags: int        # VMA flag bits + PTE bits + task conditions + CPU features switched on
    injections: int
    json_bytes: int

    @staticmethod
    def of(s: Scenario) -> "Size":
        flags = (sum(bin(v.flags).count("1") for v in s.vmas)
                 + sum(sum(getattr(p, b) for b in PTE_BITS) for _, p in s.ptes)
                 + sum(getattr(s.task, f.name) != getattr(TASK_DEFAULTS, f.name) for f in fields(TaskSpec))
                 + sum(on for _, on in s.cpu))
        return Size(len(s.vmas), len(s.ptes), flags, sum(i is not None for i in s.inject), len(s.dumps()))

    def __str__(self) -> str:
        return (f"{self.vmas} VMAs, {self.ptes} PTEs, {self.flags} flags, {self.injections} injections, "
                f"{self.json_bytes} JSON bytes")


@dataclass
class MinimizeResult:
    original: Scenario
    minimized: Scenario
    signature: str
    runs: int = 0
    accepted: dict[str, int] = field(default_factory=dict)  # pass name -> steps kept

    @property
    def before(self) -> Size:
        return Size.of(self.original)

    @property
    def after(self) -> Size:
        return Size.of(self.minimized)


def _popcount(v: int) -> int:
    return bin(v).count("1")


def insn_rank(arch: "Arch", name: str) -> tuple[int, int, int, str]:
    """Simplicity of a catalogue instruction: shortest encoding, narrowest access, plainest text."""
    i = arch.catalogue[name]
    return (len(i.encoding), i.width, len(i.summary), i.name)


def complexity(s: Scenario, arch: "Arch") -> int:
    """A well-founded measure every accepted step strictly lowers, so the fixpoint loop ends."""
    order = sorted(arch.catalogue, key=lambda n: insn_rank(arch, n))
    pages = sum((v.end - v.start) // PAGE_SIZE for v in s.vmas)
    files = sum((v.file is not None) + (v.file is not None and v.file.cache != "cached")
                + (v.pgoff is not None) for v in s.vmas)
    ptes_state = sum(p.state != "present" for _, p in s.ptes)
    size = Size.of(s)
    return (100 * size.vmas + pages + files + 10 * size.ptes + ptes_state + size.flags
            + len(s.cpu) + len(s.inject) + size.injections + sum(_popcount(i or 0) for i in s.inject)
            + _popcount(s.addr) + _popcount(s.sp) + (order.index(s.insn) if s.insn in order else 0))


# -- passes: each yields candidate scenarios, simplest first -------------------------------------

def drop_vmas(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    for i in range(len(s.vmas)):
        yield replace(s, vmas=s.vmas[:i] + s.vmas[i + 1:])


def drop_ptes(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    for i in range(len(s.ptes)):
        yield replace(s, ptes=s.ptes[:i] + s.ptes[i + 1:])


def clear_pte_bits(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    for i, (addr, p) in enumerate(s.ptes):
        if p.state != "present":
            yield replace(s, ptes=s.ptes[:i] + ((addr, replace(p, state="present")),) + s.ptes[i + 1:])
        for b in PTE_BITS:
            if getattr(p, b):
                yield replace(s, ptes=s.ptes[:i] + ((addr, replace(p, **{b: False})),) + s.ptes[i + 1:])


def clear_task(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    for f in fields(TaskSpec):
        default = getattr(TASK_DEFAULTS, f.name)
        if getattr(s.task, f.name) != default:
            yield replace(s, task=replace(s.task, **{f.name: default}))


def simplify_injections(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    inj = s.inject
    while inj and inj[-1] is None:  # trailing "natural" entries say nothing
        inj = inj[:-1]
    if inj != s.inject:
        yield replace(s, inject=inj)
    for i in range(len(s.inject)):
        yield replace(s, inject=s.inject[:i] + s.inject[i + 1:])
    for i, v in enumerate(s.inject):
        if v is not None:
            yield replace(s, inject=s.inject[:i] + (None,) + s.inject[i + 1:])
            bit = 1
            while bit <= v:  # fewer VM_FAULT_* bits in the injected result
                if v & bit:
                    yield replace(s, inject=s.inject[:i] + (v & ~bit,) + s.inject[i + 1:])
                bit <<= 1


def clear_cpu(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    for i, (name, on) in enumerate(s.cpu):
        yield replace(s, cpu=s.cpu[:i] + s.cpu[i + 1:])  # the arch's default
        if on:
            yield replace(s, cpu=s.cpu[:i] + ((name, False),) + s.cpu[i + 1:])


def simplify_vma_flags(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    for i, v in enumerate(s.vmas):
        bit = 1
        while bit <= v.flags:
            if v.flags & bit:
                yield _with_vma(s, i, replace(v, flags=v.flags & ~bit))
            bit <<= 1


def simplify_file(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    for i, v in enumerate(s.vmas):
        if v.file is not None:
            yield _with_vma(s, i, replace(v, file=None, pgoff=None))
            if v.file.cache != "cached":
                yield _with_vma(s, i, replace(v, file=replace(v.file, cache="cached")))
        if v.pgoff is not None:
            yield _with_vma(s, i, replace(v, pgoff=None))


def shrink_vmas(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    """One page first (the page of addr, of sp, the first, the last), then one page off an end."""
    for i, v in enumerate(s.vmas):
        if v.end - v.start <= PAGE_SIZE:
            continue
        starts = []
        for a in (s.addr, s.sp - 1, s.sp):
            if v.start <= a < v.end:
                starts.append(a & PAGE_MASK)
        starts += [v.start, v.end - PAGE_SIZE]
        for start in dict.fromkeys(starts):
            # a file VMA keeps mapping the same file offsets when its start moves
            pgoff = v.pgoff
            if v.file is not None:
                pgoff = (v.pgoff or 0) + (start - v.start) // PAGE_SIZE or None
            yield _with_vma(s, i, replace(v, start=start, end=start + PAGE_SIZE, pgoff=pgoff))
        yield _with_vma(s, i, replace(v, end=v.end - PAGE_SIZE))
        yield _with_vma(s, i, replace(v, start=v.start + PAGE_SIZE))


def simplify_addresses(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    """addr and sp: page-aligned, then one set bit fewer at a time (lowest first)."""
    for name in ("addr", "sp"):
        value = getattr(s, name)
        if value & ~PAGE_MASK and value & PAGE_MASK:
            yield replace(s, **{name: value & PAGE_MASK})
        bit = 1
        while bit <= value:
            if value & bit:
                yield replace(s, **{name: value & ~bit})
            bit <<= 1


def simplify_insn(s: Scenario, arch: "Arch") -> Iterator[Scenario]:
    """A simpler catalogue instruction of the same access kind (read, write, rmw, fetch)."""
    current = arch.catalogue.get(s.insn)
    if current is None:
        return
    for i in sorted(arch.instructions_for(s.mode), key=lambda i: insn_rank(arch, i.name)):
        if insn_rank(arch, i.name) >= insn_rank(arch, s.insn):
            break
        if i.access == current.access:
            yield replace(s, insn=i.name)


def _with_vma(s: Scenario, i: int, v: VmaSpec) -> Scenario:
    return replace(s, vmas=s.vmas[:i] + (v,) + s.vmas[i + 1:])


PASSES: tuple[tuple[str, Callable[[Scenario, "Arch"], Iterator[Scenario]]], ...] = (
    ("drop VMAs", drop_vmas),
    ("drop PTEs", drop_ptes),
    ("drop/clear injections", simplify_injections),
    ("clear task conditions", clear_task),
    ("clear CPU features", clear_cpu),
    ("simplify file backing", simplify_file),
    ("shrink VMAs", shrink_vmas),
    ("clear VMA flags", simplify_vma_flags),
    ("clear PTE bits", clear_pte_bits),
    ("simpler instruction", simplify_insn),
    ("simpler addr/sp", simplify_addresses),
)


def differ_oracle(differ: "Differ") -> Oracle:
    """The signature of a candidate, or None if it no longer diverges or is not a valid scenario."""
    def oracle(s: Scenario) -> str | None:
        try:
            validate_layout(s)
            return current_signature(differ, s)[0]
        except ScenarioError:
            return None
    return oracle


def minimize(scenario: Scenario, arch: "Arch", oracle: Oracle, max_runs: int = 20000) -> MinimizeResult:
    """Greedy passes to a fixpoint: the first candidate of a pass that keeps the signature is
    taken and the pass starts again on it; the loop ends when a full round takes nothing."""
    signature = oracle(scenario)
    if signature is None:
        raise NothingToMinimize("the scenario does not diverge: nothing to minimise")
    result = MinimizeResult(scenario, scenario, signature, runs=1)
    current, cost = scenario, complexity(scenario, arch)
    progress = True
    while progress and result.runs < max_runs:
        progress = False
        for name, candidates in PASSES:
            restart = True
            while restart and result.runs < max_runs:
                restart = False
                for cand in candidates(current, arch):
                    cand_cost = complexity(cand, arch)
                    if cand_cost >= cost:  # only strictly simpler steps: no cycles between passes
                        continue
                    result.runs += 1
                    if oracle(cand) == signature:
                        current, cost = cand, cand_cost
                        result.accepted[name] = result.accepted.get(name, 0) + 1
                        progress = restart = True
                        break
                    if result.runs >= max_runs:
                        break
    result.minimized = current
    return result


def format_result(r: MinimizeResult) -> str:
    steps = ", ".join(f"{n} x{c}" for n, c in r.accepted.items()) or "none"
    return (f"signature: {r.signature}\n"
            f"before: {r.before}\n"
            f"after:  {r.after}\n"
            f"{r.runs} runs; steps kept: {steps}")
