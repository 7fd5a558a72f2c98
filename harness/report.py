"""Human-readable reports: a scenario laid out (VMA map, PTEs, the instruction disassembled) and
legacy vs generic decision paths side by side."""

from __future__ import annotations

import itertools

from .arch import Arch
from .diff import Result
from .kernel.constants import PAGE_MASK, PAGE_SIZE, SIGNALS, SI_CODES, VM_FLAGS, describe
from .outcome import Outcome
from .scenario import Scenario

WIDTH = 60


def disassemble(arch: Arch, insn: str) -> str:
    """The catalogue instruction as capstone reads its bytes."""
    spec = arch.catalogue[insn]
    text = spec.summary
    if arch.capstone is not None:
        import capstone
        md = capstone.Cs(*arch.capstone)
        text = "; ".join(f"{i.mnemonic} {i.op_str}".strip() for i in md.disasm(spec.encoding, 0)) or text
    return f"{insn}: {spec.encoding.hex(' ')}  {text}  ({spec.access}, {spec.width} bytes)"


def layout(scenario: Scenario, arch: Arch) -> str:
    lines = [f"{scenario.arch} {scenario.mode} mode    addr={scenario.addr:#x}  sp={scenario.sp:#x}",
             "instruction: " + disassemble(arch, scenario.insn), "", "VMAs:"]
    text = arch.layout.user_text
    rows = [(v.start, v.end, describe(v.flags, VM_FLAGS) +
             (f"  file size={v.file.size:#x} cache={v.file.cache}" if v.file else "  anon"))
            for v in scenario.vmas]
    rows.append((text, text + PAGE_SIZE, "VM_READ|VM_EXEC  (user text: the instruction)"))
    for start, end, what in sorted(rows):
        marks = []
        if start <= scenario.addr < end:
            marks.append("<- addr")
        if start <= scenario.sp < end:
            marks.append("<- sp")
        lines.append(f"  [{start:#018x}-{end:#018x}) {what} {' '.join(marks)}")
    if not scenario.vmas:
        lines.append("  (none besides the text page)")
    lines.append("PTEs:")
    ptes = dict(scenario.ptes)
    wrap = (1 << arch.word_bits) - 1
    below_sp = (scenario.sp - 8) & wrap
    pages = sorted(set(ptes) | {scenario.addr & PAGE_MASK, ((scenario.addr + 15) & wrap) & PAGE_MASK,
                                below_sp & PAGE_MASK})
    for page in pages:
        p = ptes.get(page)
        desc = "none" if p is None else p.state + " " + ",".join(
            b for b in ("write", "user", "exec", "dirty", "young", "rsvd") if getattr(p, b))
        marks = [m for m, a in (("addr", scenario.addr), ("sp-8", below_sp)) if a & PAGE_MASK == page]
        lines.append(f"  {page:#018x} {desc}" + (f"   <- {', '.join(marks)}" if marks else ""))
    t = scenario.task
    conds = [f.replace("_", " ") for f in ("fatal_signal", "sig_on_uaccess_error", "in_atomic", "no_mm",
                                            "mmap_sem_contended", "extable") if getattr(t, f)]
    lines.append("task: " + (", ".join(conds) or "nothing pending") + f"; RLIMIT_STACK={t.stack_rlimit:#x}")
    lines.append("cpu: " + (", ".join(f"{k}={'on' if v else 'off'}" for k, v in scenario.cpu) or "-"))
    if scenario.inject:
        from .kernel.constants import VM_FAULTS
        lines.append("handle_mm_fault injections: " + ", ".join(
            "natural" if i is None else describe(i, VM_FAULTS) for i in scenario.inject))
    return "\n".join(lines)


def outcome_line(o: Outcome) -> str:
    sig = o.signal
    s = o.disposition
    if o.detail and o.disposition in ("kernel_bug", "oops", "livelock"):
        s += f" ({o.detail})"
    if sig:
        s += f"  {SIGNALS.get(sig.signo, sig.signo)} {SI_CODES.get((sig.signo, sig.code), sig.code)} addr={sig.addr:#x}"
        if sig.addr_lsb:
            s += f" lsb={sig.addr_lsb}"
    return s + f"  maj={o.maj_flt} min={o.min_flt}"


def _column(o: Outcome) -> list[str]:
    lines: list[str] = []
    for i, f in enumerate(o.faults):
        native = " ".join(f"{k}={v:#x}" for k, v in f.native if k not in ("user",))
        lines.append(f"fault {i + 1}: {native}")
        for e in f.events:
            prefix = "  * " if e.kind == "decision" else "    "
            lines.append(prefix + str(e))
    lines.append("=> " + outcome_line(o))
    return lines


def _wrap(line: str) -> list[str]:
    return [line[i:i + WIDTH] for i in range(0, max(len(line), 1), WIDTH)]


def side_by_side(result: Result) -> str:
    left = [w for line in _column(result.legacy) for w in _wrap(line)]
    right = [w for line in _column(result.generic) for w in _wrap(line)]
    out = [f"{'legacy v4.0':<{WIDTH}} | generic ({result.variant})", "-" * WIDTH + "-+-" + "-" * WIDTH]
    for a, b in itertools.zip_longest(left, right, fillvalue=""):
        out.append(f"{a:<{WIDTH}} | {b}")
    return "\n".join(out)


def full_report(result: Result, arch: Arch) -> str:
    d = result.divergence
    head = ("no divergence" if d is None else
            f"DIVERGENCE  {d.signature}\n  first differing field: {d.field}: legacy {d.legacy}, generic {d.generic}"
            + (f"\n  known: {d.known.id}: {d.known.note}" if d.known else ""))
    return "\n\n".join([head, layout(result.scenario, arch), side_by_side(result)]) + "\n"
