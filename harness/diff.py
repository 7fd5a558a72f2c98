"""The fault loop: run a scenario's instruction on the arch's CPU, hand each fault to a handler
in a fresh simulated kernel, re-execute until it completes or ends, for legacy and generic."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from .arch import Arch, Cpu, CpuRun, Fidelity, NativeFault
from .generic import GenericVariant
from .kernel import Kernel, KernelBug, KernelConfig, MmLimits, MmStruct, Oops, Pte, Task, Vma
from .kernel.constants import PAGE_SHIFT, PAGE_SIZE, VM_EXEC, VM_READ
from .outcome import Divergence, FaultRecord, Outcome, Policy, compare
from .scenario import Scenario, ScenarioError

# More faults than any instruction of the catalogue needs to complete (a page-crossing string op
# with a retry on each page takes four); past this, the handlers are not making progress.
MAX_FAULTS = 12

Handler = Callable[[Kernel, NativeFault], None]


def check_scenario(scenario: Scenario, arch: Arch) -> None:
    """Arch-level validation: the instruction exists for the mode, nothing overlaps the text page."""
    insn = arch.catalogue.get(scenario.insn)
    if insn is None:
        raise ScenarioError(f"insn: {scenario.insn!r} is not in the {arch.name} catalogue")
    if scenario.mode not in insn.modes:
        raise ScenarioError(f"insn: {scenario.insn} is not meaningful in {scenario.mode} mode")
    unknown = [k for k, _ in scenario.cpu if k not in arch.cpu_features]
    if unknown:
        raise ScenarioError(f"cpu: {arch.name} has no feature {unknown[0]!r} "
                            f"(known: {', '.join(arch.cpu_features) or 'none'})")
    text = arch.layout.user_text
    limit = (1 << arch.word_bits)
    for i, v in enumerate(scenario.vmas):
        if v.start < text + PAGE_SIZE and text < v.end:
            raise ScenarioError(f"vmas[{i}] overlaps the user text page {text:#x}")
        if v.end > arch.layout.task_size:
            raise ScenarioError(f"vmas[{i}] extends beyond TASK_SIZE {arch.layout.task_size:#x}")
    for i, (addr, _) in enumerate(scenario.ptes):
        if addr == text:
            raise ScenarioError(f"ptes[{i}] is the user text page {text:#x}")
        if addr >= limit:
            raise ScenarioError(f"ptes[{i}].addr {addr:#x} does not fit {arch.word_bits} bits")
    if scenario.addr >= limit or scenario.sp >= limit:
        raise ScenarioError(f"addr and sp must fit {arch.word_bits} bits")


def build_kernel(scenario: Scenario, arch: Arch) -> Kernel:
    """A fresh world for one side: the scenario's VMAs and PTEs plus the user text page."""
    text = arch.layout.user_text
    vmas = [Vma(v.start, v.end, v.flags, v.file,
                v.pgoff if v.pgoff is not None else (0 if v.file else v.start >> PAGE_SHIFT))
            for v in scenario.vmas]
    vmas.append(Vma(text, text + PAGE_SIZE, VM_READ | VM_EXEC, None, text >> PAGE_SHIFT))
    vmas.sort(key=lambda v: v.start)
    ptes = dict(scenario.ptes)
    ptes[text] = Pte("present", write=False, user=True, exec=True, young=True)
    t = scenario.task
    mm = None if t.no_mm else MmStruct(vmas, ptes, MmLimits(stack_rlimit=t.stack_rlimit,
                                                             mmap_min_addr=arch.layout.mmap_min_addr))
    task = Task(fatal_signal=t.fatal_signal, sig_on_uaccess_error=t.sig_on_uaccess_error,
                in_atomic=t.in_atomic)
    extable = frozenset({arch.layout.kernel_text}) if t.extable and scenario.mode == "kernel" else frozenset()
    return Kernel(mm, task, KernelConfig(arch.layout.task_size, arch.layout.page_size),
                  extable=extable, mmap_sem_contended=t.mmap_sem_contended, inject=scenario.inject,
                  features=scenario.cpu_features)


def run_side(scenario: Scenario, arch: Arch, cpu: Cpu, handler: Handler) -> Outcome:
    """Execute -> fault -> handle -> re-execute, to completion or an end, in a fresh kernel."""
    k = build_kernel(scenario, arch)
    faults: list[FaultRecord] = []
    seen: set[tuple] = set()
    disposition, detail = "livelock", f"more than {MAX_FAULTS} faults"
    features = scenario.cpu_features
    for _ in range(MAX_FAULTS):
        run = CpuRun(scenario.insn, scenario.mode, scenario.addr, scenario.sp,
                     k.mm.ptes if k.mm is not None else {}, features)
        fault = cpu.execute(run)
        if fault is None:
            disposition, detail = "completed", ""
            break
        state = (tuple(sorted(fault.registers().items())), k.fingerprint())
        if state in seen:
            disposition, detail = "livelock", "the same fault repeats with no change of state"
            break
        seen.add(state)
        mark = k.mark()
        ended = None
        try:
            handler(k, fault)
            if k.mmap_sem.readers:
                ended = ("kernel_bug", "returned to the CPU with mmap_sem held")
        except Oops as e:
            ended = ("oops", str(e))
        except KernelBug as e:
            ended = ("kernel_bug", str(e))
        faults.append(FaultRecord(tuple(sorted(fault.registers().items())), tuple(k.events_since(mark))))
        if ended:
            disposition, detail = ended
            break
        if k.fixups:
            disposition, detail = "fixup", "exception-table fixup"
            break
        if k.task.signals:
            disposition, detail = "signal", ""
            break
        if scenario.mode == "user" and k.task.fatal_signal:
            disposition, detail = "killed", "fatal signal delivered on return to user mode"
            break
    mm = k.mm
    return Outcome(
        disposition, detail, tuple(k.task.signals), tuple(faults), tuple(k.mm_calls),
        k.task.maj_flt, k.task.min_flt, tuple(sorted(k.perf.items())),
        tuple((v.start, v.end, v.flags) for v in mm.vmas) if mm else (),
        tuple(sorted((a, _pte_str(p)) for a, p in mm.ptes.items())) if mm else ())


def _pte_str(p: Pte) -> str:
    bits = "".join(c for c, on in (("w", p.write), ("u", p.user), ("x", p.exec), ("d", p.dirty),
                                     ("a", p.young), ("r", p.rsvd)) if on)
    return f"{p.state}:{bits}"


class _Memo:
    """Both sides start from the same page tables, so their first executions (and any later ones
    on identical state) give identical faults: run the emulator once for each distinct CpuRun."""

    def __init__(self, cpu: Cpu) -> None:
        self.cpu = cpu
        self.fidelity = cpu.fidelity
        self.seen: dict[tuple, NativeFault | None] = {}

    def execute(self, run: CpuRun) -> NativeFault | None:
        key = (run.insn, run.mode, run.addr, run.sp, tuple(sorted(run.ptes.items())),
               tuple(sorted(run.features.items())))
        if key not in self.seen:
            self.seen[key] = self.cpu.execute(run)
        return self.seen[key]


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    variant: str
    legacy: Outcome
    generic: Outcome
    divergence: Divergence | None


class Differ:
    """Runs scenarios through legacy and one generic variant, keeping one CPU per arch alive."""

    def __init__(self, variant: GenericVariant, policy: Policy | None = None,
                 fidelity: Fidelity | None = None, resolve: Callable[[str], Arch] | None = None) -> None:
        from arches import get_arch  # the registry: the harness never names an arch itself
        self.variant = variant
        self.policy = policy or Policy()
        self.fidelity = fidelity
        self.resolve = resolve or get_arch
        self._cpus: dict[tuple[str, str], Cpu] = {}

    def cpu(self, arch: Arch) -> Cpu:
        fidelity = self.fidelity if self.fidelity in arch.fidelities else arch.fidelities[0]
        key = (arch.name, fidelity)
        if key not in self._cpus:
            self._cpus[key] = arch.make_cpu(fidelity)
        return self._cpus[key]

    def run(self, scenario: Scenario) -> Result:
        arch = self.resolve(scenario.arch)
        check_scenario(scenario, arch)
        cpu = _Memo(self.cpu(arch))
        legacy = run_side(scenario, arch, cpu, arch.legacy)
        convert = arch.conversion(self.variant.name)
        hooks_handler = self.variant.handler

        def generic(k: Kernel, fault: NativeFault) -> None:
            convert(k, fault, hooks_handler)

        gen = run_side(scenario, arch, cpu, generic)
        policy = replace(self.policy, normalisations=self.policy.normalisations + arch.normalisations)
        return Result(scenario, self.variant.name, legacy, gen, compare(arch.name, legacy, gen, policy))
