"""One self-contained HTML page for a campaign: findings table, per-finding decision paths side by
side, the VMA/PTE layout as inline SVG, the disassembly, and the decision-point coverage matrix."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from .kernel.constants import PAGE_MASK, PAGE_SIZE, VM_FLAGS, describe
from .report import disassemble, outcome_line
from .scenario import Scenario, ScenarioError

if TYPE_CHECKING:
    from .arch import Arch
    from .diff import Differ, Result
    from .outcome import Outcome

REPO = Path(__file__).resolve().parent.parent
DECIDE_RE = re.compile(r"""\.decide\(\s*(f?)(["'])(.*?)(?<!\\)\2""")


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


# -- the universe of decision points -----------------------------------------------------------

@dataclass(frozen=True)
class Label:
    text: str               # as written in the source (an f-string keeps its {...} fields)
    pattern: re.Pattern[str]
    line: int


def scan_labels(path: Path) -> list[Label]:
    """Every k.decide("...") label of a model source, first occurrence, in source order."""
    out: dict[str, Label] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        for m in DECIDE_RE.finditer(line):
            text = m.group(3)
            if text in out:
                continue
            if m.group(1):  # an f-string: its fields match anything
                parts = re.split(r"\{[^}]*\}", text)
                pattern = re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")
            else:
                pattern = re.compile(re.escape(text) + r"\Z")
            out[text] = Label(text, pattern, n)
    return list(out.values())


def model_sources(root: Path = REPO) -> dict[str, Path]:
    """Model key -> source: generic/<variant>, <archdir>/legacy, <archdir>/convert."""
    out: dict[str, Path] = {}
    for p in sorted((root / "harness" / "generic").glob("*.py")):
        if p.stem != "__init__":
            out[f"generic/{p.stem}"] = p
    for d in sorted((root / "arches").iterdir()):
        for part in ("legacy", "convert"):
            if (d / f"{part}.py").exists():
                out[f"{d.name}/{part}"] = d / f"{part}.py"
    return out


def arch_dir(arch_name: str) -> str:
    """The folder under arches/ an arch lives in, from the registry's module path."""
    from arches import REGISTRY
    target = REGISTRY.get(arch_name, "")
    return target.split(":")[0].split(".")[-1] if target else arch_name


@dataclass
class Coverage:
    """Which decision labels each model reached, split by where the scenario came from."""

    universe: dict[str, list[Label]]
    sources: dict[str, Path]
    hits: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (model, label) -> origin -> n
    extra: dict[str, set[str]] = field(default_factory=dict)  # labels traced but not found in source

    @staticmethod
    def scan(root: Path = REPO) -> "Coverage":
        sources = model_sources(root)
        return Coverage({k: scan_labels(p) for k, p in sources.items()}, sources)

    def _match(self, model: str, label: str) -> str | None:
        for lab in self.universe.get(model, ()):
            if lab.pattern.match(label):
                return lab.text
        return None

    def _hit(self, model: str, text: str, origin: str) -> None:
        cell = self.hits.setdefault((model, text), {})
        cell[origin] = cell.get(origin, 0) + 1

    def add(self, result: "Result", origin: str) -> None:
        """Legacy-side decisions count for <arch>/legacy; generic-side ones for the variant's file,
        the conversion, and (as "via conversion") legacy helpers the conversion reuses."""
        d = arch_dir(result.scenario.arch)
        for f in result.legacy.faults:
            for label in (e.what for e in f.events if e.kind == "decision"):
                text = self._match(f"{d}/legacy", label)
                if text is None:
                    self.extra.setdefault(f"{d}/legacy", set()).add(label)
                else:
                    self._hit(f"{d}/legacy", text, origin)
        models = [f"generic/{result.variant}", f"{d}/convert", f"{d}/legacy"]
        for f in result.generic.faults:
            for label in (e.what for e in f.events if e.kind == "decision"):
                for m in models:
                    text = self._match(m, label)
                    if text is not None:
                        self._hit(m, text, origin if m != f"{d}/legacy" else "via conversion")
                        break
                else:
                    self.extra.setdefault(f"{d}/convert", set()).add(label)

    def reached(self, model: str) -> int:
        return sum(1 for lab in self.universe[model] if (model, lab.text) in self.hits)


# -- the layout picture --------------------------------------------------------------------------

PTE_COLOURS = {"none": "#eceff1", "present": "#a5d6a7", "swap": "#90caf9", "hwpoison": "#ef9a9a",
               "protnone": "#ffcc80"}
FLAG_SHORT = (("VM_READ", "r"), ("VM_WRITE", "w"), ("VM_EXEC", "x"), ("VM_SHARED", "s"),
              ("VM_GROWSDOWN", "↓"), ("VM_LOCKED", "L"))
COL, BREAK = 78, 34


def _display_pages(s: Scenario, arch: "Arch") -> list[int | None]:
    """Pages to draw, in order, with None where a run of uninteresting pages is left out."""
    text = arch.layout.user_text
    width = arch.catalogue[s.insn].width if s.insn in arch.catalogue else 8
    keys = {text, s.addr & PAGE_MASK, (s.addr + width - 1) & PAGE_MASK, s.sp & PAGE_MASK,
            (s.sp - 1) & PAGE_MASK}
    for v in s.vmas:
        keys |= {v.start, v.end - PAGE_SIZE}
    keys |= {a for a, _ in s.ptes}
    limit = (1 << 64) - PAGE_SIZE
    pages = sorted({p + d for p in keys for d in (-PAGE_SIZE, 0, PAGE_SIZE) if 0 <= p + d <= limit})
    out: list[int | None] = []
    for p in pages:
        if out and out[-1] is not None and p != out[-1] + PAGE_SIZE:
            out.append(None)
        out.append(p)
    return out


def layout_svg(s: Scenario, arch: "Arch") -> str:
    pages = _display_pages(s, arch)
    xs: dict[int, int] = {}
    breaks: list[tuple[int, int, int]] = []  # x, previous page, next page
    x = 10
    for i, p in enumerate(pages):
        if p is None:
            breaks.append((x, pages[i - 1], pages[i + 1]))  # type: ignore[arg-type]
            x += BREAK
        else:
            xs[p] = x
            x += COL
    width = x + 10
    y_vma, y_pte, y_addr = 44, 104, 150
    parts: list[str] = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="236" '
                        f'viewBox="0 0 {width} 236" class="layout" role="img">']
    parts.append(f'<line x1="6" y1="{y_addr - 6}" x2="{width - 6}" y2="{y_addr - 6}" class="axis"/>')
    text = arch.layout.user_text
    vmas = [(v.start, v.end, v.flags, v.file, False) for v in s.vmas]
    vmas.append((text, text + PAGE_SIZE, 0x5, None, True))
    for start, end, flags, file, is_text in sorted(vmas):
        shown = [p for p in xs if start <= p < end]
        if not shown:
            continue
        x0, x1 = xs[min(shown)] + 2, xs[max(shown)] + COL - 2
        names = describe(flags, VM_FLAGS).split("|")
        # rwx like /proc/PID/maps, then s(hared), ↓ (grows down), L(ocked): fits a one-page box
        short = "".join(sh if n in names else "-" for n, sh in FLAG_SHORT[:3])
        extra = "".join(sh for n, sh in FLAG_SHORT[3:] if n in names)
        kind = "text" if is_text else (f"file {file.cache}" if file else "anon")
        cls = "vma text" if is_text else ("vma file" if file else "vma")
        title = (f"[{start:#x}-{end:#x}) {describe(flags, VM_FLAGS)} "
                 + (f"file size={file.size:#x} cache={file.cache}" if file else kind))
        parts.append(f'<g><title>{esc(title)}</title><rect x="{x0}" y="{y_vma}" width="{x1 - x0}" '
                     f'height="44" rx="5" class="{cls}"/>'
                     f'<text x="{x0 + 6}" y="{y_vma + 18}" class="vmaflags">{esc(short)} {esc(extra)}</text>'
                     f'<text x="{x0 + 6}" y="{y_vma + 35}" class="vmakind">{esc(kind)}</text></g>')
    ptes = dict(s.ptes)
    ptes.setdefault(text, None)  # type: ignore[arg-type]
    for p, px in xs.items():
        pte = ptes.get(p)
        if p == text:
            state, bits, label = "present", "ux", "text"
        elif pte is None:
            state, bits, label = "none", "", "none"
        else:
            bits = "".join(c for c, on in (("w", pte.write), ("u", pte.user), ("x", pte.exec),
                                            ("d", pte.dirty), ("a", pte.young), ("R", pte.rsvd)) if on)
            state, label = pte.state, pte.state
        parts.append(f'<g><title>{esc(f"{p:#x}: PTE {label} {bits}")}</title>'
                     f'<rect x="{px + 2}" y="{y_pte}" width="{COL - 4}" height="30" rx="3" '
                     f'fill="{PTE_COLOURS[state]}" class="pte"/>'
                     f'<text x="{px + COL // 2}" y="{y_pte + 13}" class="ptetext">{esc(label)}</text>'
                     f'<text x="{px + COL // 2}" y="{y_pte + 26}" class="ptebits">{esc(bits or "-")}</text></g>')
        parts.append(f'<line x1="{px}" y1="{y_addr - 10}" x2="{px}" y2="{y_addr - 2}" class="tick"/>'
                     f'<text x="{px + 3}" y="{y_addr + 8}" class="addr" '
                     f'transform="rotate(28 {px + 3} {y_addr + 8})">{p:#x}</text>')
    for bx, prev, nxt in breaks:
        skipped = (nxt - prev) // PAGE_SIZE - 1
        parts.append(f'<g class="break"><title>{skipped} pages left out</title>'
                     f'<path d="M{bx + 10} {y_vma - 4} l6 8 l-6 8 l6 8 l-6 8 l6 8 l-6 8 l6 8 l-6 8 l6 8 l-6 8 l6 8" '
                     f'class="zigzag"/><text x="{bx + BREAK // 2}" y="{y_addr - 10}" class="skip">'
                     f'{"…" if skipped > 9999 else f"+{skipped}"}</text></g>')
    markers = [("addr", s.addr, "marker-addr", 14), ("sp", s.sp, "marker-sp", 30)]
    for name, value, cls, y in markers:
        page = value & PAGE_MASK
        if page not in xs:
            continue
        mx = xs[page] + 2 + (COL - 4) * (value - page) // PAGE_SIZE
        parts.append(f'<g class="{cls}"><title>{name} = {value:#x}</title>'
                     f'<line x1="{mx}" y1="{y + 2}" x2="{mx}" y2="{y_pte + 30}" class="mline"/>'
                     f'<path d="M{mx - 5} {y - 6} L{mx + 5} {y - 6} L{mx} {y + 2} Z"/>'
                     f'<text x="{mx + 7}" y="{y}" class="mtext">{name} {value:#x}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


# -- decision paths ----------------------------------------------------------------------------

def _path_html(o: "Outcome") -> str:
    rows = []
    for i, f in enumerate(o.faults):
        native = " ".join(f"{k}={v:#x}" for k, v in f.native if k != "user")
        rows.append(f'<li class="fault">fault {i + 1}: <code>{esc(native)}</code><ul>')
        last = f.route()
        for e in f.events:
            cls = "decision" if e.kind == "decision" else e.kind
            if e.kind == "decision" and e.route and e.what == last:
                cls += " route"
            rows.append(f'<li class="{cls}">{esc(e)}</li>')
        rows.append("</ul></li>")
    rows.append(f'<li class="end">⇒ {esc(outcome_line(o))}</li>')
    return '<ol class="path">' + "".join(rows) + "</ol>"


def side_by_side_html(r: "Result") -> str:
    return ('<table class="sbs"><tr><th>legacy v4.0</th><th>generic (' + esc(r.variant) + ')</th></tr>'
            f'<tr><td>{_path_html(r.legacy)}</td><td>{_path_html(r.generic)}</td></tr></table>')


# -- the page ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FindingRow:
    """A finding as the store lists it, with its reproducer already loaded (or why it could not be)."""

    signature: str
    kind: str
    count: int
    first_seen: float
    known: str | None
    reproducer: str
    scenario: Scenario | None
    error: str = ""


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1c2430;background:#f6f7f9}
header{background:#1f2a38;color:#fff;padding:16px 28px}header h1{margin:0;font-size:21px}
header p{margin:4px 0 0;color:#b8c4d2}main{padding:8px 28px 40px;max-width:1500px}
h2{font-size:18px;margin:28px 0 10px;border-bottom:2px solid #d5dbe3;padding-bottom:4px}
h3{font-size:15px;margin:0 0 8px;font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
table{border-collapse:collapse}
table.findings{width:100%;background:#fff;box-shadow:0 1px 2px #0002}
.findings th,.findings td{padding:6px 8px;border-bottom:1px solid #e3e7ec;text-align:left;vertical-align:top}
.findings th{background:#eef1f5;font-weight:600}.findings td.sig{font-family:ui-monospace,Menlo,monospace;font-size:12.5px}
.num{text-align:right}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.b-new{background:#ffebee;color:#b71c1c}.b-known{background:#e8f5e9;color:#1b5e20}
.b-fixed{background:#e3f2fd;color:#0d47a1}.b-changed{background:#fff3e0;color:#e65100}
.b-error{background:#f3e5f5;color:#6a1b9a}
section.finding{background:#fff;box-shadow:0 1px 2px #0002;padding:14px 18px;margin:16px 0;border-left:5px solid #c62828}
section.finding.known{border-left-color:#2e7d32}section.finding.harness{border-left-color:#6a1b9a}
.meta{color:#5a6878;font-size:12.5px;margin-bottom:8px}
.diff{background:#fff8e1;border:1px solid #ffe082;padding:6px 10px;margin:8px 0;font-family:ui-monospace,Menlo,monospace;font-size:12.5px}
.svgbox{overflow-x:auto;border:1px solid #e3e7ec;background:#fcfdfe;margin:8px 0}
svg.layout .axis{stroke:#90a4ae;stroke-width:1}svg.layout .tick{stroke:#90a4ae}
svg.layout .vma{fill:#e8eaf6;stroke:#3f51b5;stroke-width:1.5}svg.layout .vma.file{fill:#f3e5f5;stroke:#8e24aa}
svg.layout .vma.text{fill:#eceff1;stroke:#78909c;stroke-dasharray:4 3}
svg.layout .vmaflags{font:600 13px ui-monospace,Menlo,monospace;fill:#1a237e}
svg.layout .vmakind{font:11px system-ui,sans-serif;fill:#455a64}
svg.layout .pte{stroke:#607d8b;stroke-width:.6}
svg.layout .ptetext{font:10.5px system-ui,sans-serif;text-anchor:middle;fill:#263238}
svg.layout .ptebits{font:600 11px ui-monospace,Menlo,monospace;text-anchor:middle;fill:#263238}
svg.layout .addr{font:10px ui-monospace,Menlo,monospace;fill:#37474f}
svg.layout .zigzag{fill:none;stroke:#90a4ae;stroke-width:1.5}svg.layout .skip{font:10px system-ui;text-anchor:middle;fill:#78909c}
svg.layout .marker-addr{fill:#d32f2f}svg.layout .marker-addr .mline{stroke:#d32f2f}
svg.layout .marker-sp{fill:#1565c0}svg.layout .marker-sp .mline{stroke:#1565c0}
svg.layout .mline{stroke-width:1.5;stroke-dasharray:3 2}svg.layout .mtext{font:600 11px ui-monospace,Menlo,monospace}
.legend{font-size:12px;color:#455a64;margin:2px 0 6px}.legend span{display:inline-block;margin-right:12px}
.sw{display:inline-block;width:11px;height:11px;border:1px solid #607d8b;vertical-align:-1px;margin-right:4px}
table.sbs{width:100%;table-layout:fixed;margin-top:8px}.sbs th{background:#eef1f5;text-align:left;padding:5px 8px}
.sbs td{vertical-align:top;padding:4px 8px;border:1px solid #e3e7ec;width:50%}
ol.path{list-style:none;margin:0;padding:0;font-family:ui-monospace,Menlo,monospace;font-size:12px}
ol.path ul{list-style:none;margin:2px 0 6px;padding-left:14px}
ol.path li{word-break:break-word}
li.fault{color:#37474f;font-weight:600}li.fault li{font-weight:400}
li.decision{color:#0d47a1}li.decision::before{content:"◆ ";color:#90caf9}
li.route{font-weight:700;background:#e3f2fd}li.call{color:#607d8b}li.result{color:#6d4c41}
li.end{font-weight:700;margin-top:4px;color:#1b1f24}
.insn{background:#263238;color:#eceff1;padding:6px 10px;border-radius:4px;margin:6px 0}
.cov{columns:3 430px;column-gap:18px}.covmodel{break-inside:avoid;background:#fff;box-shadow:0 1px 2px #0002;
margin:0 0 14px;padding:8px 10px}
.covmodel h4{margin:0 0 6px;font-size:13.5px;font-family:ui-monospace,Menlo,monospace}
.covmodel h4 small{font-family:system-ui,sans-serif;color:#5a6878;font-weight:400}
table.covt{width:100%;font-size:12px;table-layout:fixed}.covt td.l{word-break:break-all}.covt td,.covt th{padding:1px 4px;border-bottom:1px solid #f0f2f5}
.covt th{text-align:left;color:#5a6878;font-weight:600}.covt td.l{font-family:ui-monospace,Menlo,monospace}
.covt td.c,.covt th.c{text-align:right;width:58px;font-variant-numeric:tabular-nums}
tr.unreached td.l{background:#ffebee;color:#b71c1c}tr.via td.l{background:#fffde7}
tr.hit td.l{background:#e8f5e9}tr.extra td.l{font-style:italic;color:#6d4c41}
.bar{height:6px;background:#ffcdd2;border-radius:3px;overflow:hidden;margin:2px 0 6px}
.bar i{display:block;height:6px;background:#43a047}
details>summary{cursor:pointer;color:#37474f;margin:6px 0}
"""


def _badge(status: str) -> str:
    return f'<span class="badge b-{esc(status)}">{esc(status)}</span>'


def _replay_status(row: FindingRow, result: "Result | None", error: str) -> tuple[str, str]:
    """What the reproducer does now: same signature (new/known), another one (changed), none (fixed)."""
    if result is None:
        if row.kind == "harness-error" and error.startswith(row.signature.split(":")[0] + ": harness-error"):
            return ("known" if row.known else "new"), ""
        return "error", error
    d = result.divergence
    if d is None:
        return "fixed", ""
    if d.signature != row.signature:
        return "changed", d.signature
    return ("known" if d.known else "new"), ""


def render(findings: Sequence[FindingRow], differ: "Differ", corpus: Iterable[Scenario] = (),
           title: str = "pfdiff report", root: Path = REPO, now: float | None = None) -> str:
    from .diff import check_scenario
    coverage = Coverage.scan(root)
    replays: list[tuple[FindingRow, "Result | None", str]] = []
    for row in findings:
        result, error = None, row.error
        if row.scenario is not None:
            try:
                result = differ.run(row.scenario)
                coverage.add(result, "findings")
            except ScenarioError as e:
                error = f"invalid scenario: {e}"
            except Exception as e:  # a model raised: report it on this finding, keep going
                error = f"{row.scenario.arch}: harness-error {type(e).__name__}: {e}"
        replays.append((row, result, error))
    corpus_n, corpus_err = 0, 0
    corpus_list = list(corpus)
    for s in corpus_list:
        try:
            coverage.add(differ.run(s), "corpus")
            corpus_n += 1
        except Exception:  # invalid or crashing corpus entries are counted, not fatal
            corpus_err += 1

    out: list[str] = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
                      f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now if now is not None else time.time()))
    out.append(f"<header><h1>{esc(title)}</h1><p>{len(findings)} finding(s) · generic variant "
               f"<b>{esc(differ.variant.name)}</b> · corpus inputs replayed: {corpus_n}"
               + (f" ({corpus_err} could not run)" if corpus_err else "") + f" · generated {stamp}</p></header><main>")

    # findings table
    out.append("<h2>Findings</h2><table class=findings><tr><th>signature</th><th>kind</th>"
               "<th class=num>count</th><th>first seen</th><th>known id</th><th>replayed now</th>"
               "<th>reproducer</th></tr>")
    for i, (row, result, error) in enumerate(replays):
        status, detail = _replay_status(row, result, error)
        first = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.first_seen))
        out.append(f'<tr><td class=sig><a href="#f{i}">{esc(row.signature)}</a></td><td>{esc(row.kind)}</td>'
                   f"<td class=num>{row.count}</td><td>{first}</td><td>{esc(row.known or '–')}</td>"
                   f"<td>{_badge(status)}" + (f"<br><code>{esc(detail)}</code>" if detail else "")
                   + f"</td><td><code>{esc(row.reproducer)}</code></td></tr>")
    if not findings:
        out.append("<tr><td colspan=7>no findings</td></tr>")
    out.append("</table>")

    # one section per finding
    for i, (row, result, error) in enumerate(replays):
        cls = "finding harness" if row.kind == "harness-error" else ("finding known" if row.known else "finding")
        out.append(f'<section class="{cls}" id="f{i}"><h3>{esc(row.signature)}</h3>'
                   f'<div class=meta>{esc(row.kind)} · seen {row.count}× · reproducer '
                   f'<code>{esc(row.reproducer)}</code></div>')
        s = row.scenario
        if s is not None:
            try:
                arch = differ.resolve(s.arch)
                check_scenario(s, arch)
                out.append(f"<div class=meta>{esc(s.summary())}</div>")
                out.append(f'<div class="insn mono">{esc(disassemble(arch, s.insn))}</div>')
                out.append(f"<div class=svgbox>{layout_svg(s, arch)}</div>{LEGEND}")
                out.append(_task_line(s))
            except (ValueError, KeyError) as e:
                out.append(f"<div class=diff>cannot lay out: {esc(e)}</div>")
        if result is not None:
            d = result.divergence
            if d is None:
                out.append("<div class=diff>no divergence under the current code</div>")
            else:
                out.append(f"<div class=diff>first differing field <b>{esc(d.field)}</b>: legacy "
                           f"<b>{esc(d.legacy)}</b>, generic <b>{esc(d.generic)}</b>"
                           + (f" · known: {esc(d.known.id)} — {esc(d.known.note)}" if d.known else "")
                           + "</div>")
            out.append(side_by_side_html(result))
        elif error:
            out.append(f"<div class=diff>{esc(error)}</div>")
        out.append("</section>")

    dirs = {arch_dir(r.scenario.arch) for r, _, _ in replays if r.scenario}
    dirs |= {arch_dir(s.arch) for s in corpus_list}
    shown = {f"generic/{differ.variant.name}"} | {m for m in coverage.universe if m.split("/")[0] in dirs}
    out.append(_coverage_html(coverage, shown))
    out.append("</main></body></html>")
    return "\n".join(out)


LEGEND = ('<div class=legend>' + "".join(
    f'<span><i class=sw style="background:{c}"></i>PTE {esc(k)}</span>' for k, c in PTE_COLOURS.items())
    + '<span><i class=sw style="background:#e8eaf6;border-color:#3f51b5"></i>anon VMA</span>'
    '<span><i class=sw style="background:#f3e5f5;border-color:#8e24aa"></i>file VMA</span>'
    '<span style="color:#d32f2f">▼ addr</span><span style="color:#1565c0">▼ sp</span>'
    '<span>VMA: rwx, s shared, ↓ grows down, L locked</span>'
    '<span>PTE bits: w write, u user, x exec, d dirty, a young, R reserved</span></div>')


def _task_line(s: Scenario) -> str:
    t = s.task
    conds = [f.replace("_", " ") for f in ("fatal_signal", "sig_on_uaccess_error", "in_atomic", "no_mm",
                                            "mmap_sem_contended", "extable") if getattr(t, f)]
    cpu = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in s.cpu) or "defaults"
    inj = ""
    if s.inject:
        from .kernel.constants import VM_FAULTS
        inj = " · handle_mm_fault injections: " + ", ".join(
            "natural" if i is None else describe(i, VM_FAULTS) for i in s.inject)
    return (f"<div class=meta>task: {esc(', '.join(conds) or 'nothing pending')}; "
            f"RLIMIT_STACK={t.stack_rlimit:#x} · cpu: {esc(cpu)}{esc(inj)}</div>")


def _coverage_html(cov: Coverage, relevant: set[str]) -> str:
    """One table per model; the variant replayed and the arches replayed first, the rest folded."""
    out = ["<h2>Decision-point coverage</h2><p class=meta>Every <code>k.decide(\"…\")</code> label in the "
           "model sources, and whether replaying the findings (and the corpus, if given) reached it. "
           "<span style='background:#ffebee;color:#b71c1c'>Red</span>: never reached; "
           "<span style='background:#fffde7'>yellow</span>: a legacy helper reached only through the "
           "conversion; <i>italic</i>: traced but not written as a literal label in the source.</p>"]

    def block(model: str) -> str:
        labels = cov.universe[model]
        n, hit = len(labels), cov.reached(model)
        pct = 100 * hit // n if n else 0
        rows = [f'<div class=covmodel><h4>{esc(model)} <small>{esc(cov.sources[model].relative_to(REPO) if cov.sources[model].is_relative_to(REPO) else cov.sources[model])}'
                f' · {hit}/{n} reached</small></h4><div class=bar><i style="width:{pct}%"></i></div>'
                "<table class=covt><tr><th>label</th><th class=c>findings</th><th class=c>corpus</th></tr>"]
        for lab in labels:
            cell = cov.hits.get((model, lab.text), {})
            f, c, via = cell.get("findings", 0), cell.get("corpus", 0), cell.get("via conversion", 0)
            cls = "hit" if f or c else ("via" if via else "unreached")
            rows.append(f'<tr class={cls}><td class=l title="line {lab.line}">{esc(lab.text)}</td>'
                        f"<td class=c>{f or ('via' if via and not c else '·')}</td><td class=c>{c or '·'}</td></tr>")
        for label in sorted(cov.extra.get(model, ())):
            rows.append(f'<tr class=extra><td class=l>{esc(label)}</td><td class=c>✓</td><td class=c></td></tr>')
        rows.append("</table></div>")
        return "".join(rows)

    shown = [m for m in cov.universe if m in relevant]
    rest = [m for m in cov.universe if m not in shown]
    out.append("<div class=cov>" + "".join(block(m) for m in shown) + "</div>")
    if rest:
        out.append(f"<details><summary>{len(rest)} more model(s) of arches without findings</summary>"
                   "<div class=cov>" + "".join(block(m) for m in rest) + "</div></details>")
    return "\n".join(out)
