"""The HTML report: self-contained, escaped, with layout SVG, paths and decision coverage."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from pathlib import Path

from fakearch import FAKE, differ

from harness.html import Coverage, FindingRow, layout_svg, render, scan_labels
from harness.kernel.constants import VM_FAULT_SIGBUS, VM_READ, VM_WRITE
from harness.kernel.mm import Pte
from harness.scenario import Scenario, VmaSpec

A = 0x10000000
S = Scenario("fake64", "user", "ld8", A + 0x10, A + 0x1ff8, (VmaSpec(A, A + 0x2000, VM_READ | VM_WRITE),),
             ((A + 0x1000, Pte("swap")),), inject=(VM_FAULT_SIGBUS,))
SIG = "fake64: signal SIGBUS -> SIGSEGV [fake:legacy:sigbus | generic:mm_fault_error:sigbus]"


def test_scan_labels_reads_literals_and_f_strings(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('k.decide("a:b")\nk.decide(\'c\', "d")\nk.decide(f"x:{n}:y", route=False)\nk.decide("a:b")\n')
    labels = scan_labels(src)
    assert [l.text for l in labels] == ["a:b", "c", "x:{n}:y"]
    assert labels[2].pattern.match("x:7:y") and not labels[2].pattern.match("x:7:z")


def test_repo_universe_has_the_generic_labels():
    cov = Coverage.scan()
    texts = {l.text for l in cov.universe["generic/rfc2015"]}
    assert {"generic:bad_area", "generic:good_area", "generic:mm_fault_error:sigbus"} <= texts


def test_layout_svg_marks_addr_sp_and_elides_far_pages():
    svg = layout_svg(replace(S, sp=0x7FFFFFFF0000), FAKE)
    assert "addr 0x10000010" in svg and "sp 0x7fffffff0000" in svg
    assert "pages left out" in svg           # a break between the VMA and the far stack pointer
    assert "swap" in svg and "text" in svg   # PTE state and the user text page


def block(out: str, model: str) -> str:
    """The coverage table of one model."""
    return out.split(f"<h4>{model} ")[1].split("</table>")[0]


def page(rows, corpus=()):
    return render(rows, differ(), corpus, title="t<1>", now=0)


def test_report_is_self_contained_and_escaped():
    row = FindingRow(SIG + " <b>", "divergence", 3, 0.0, None, "/x/scenario.json", S)
    out = page([row])
    assert "t&lt;1&gt;" in out and html.escape(SIG + " <b>") in out and SIG + " <b>" not in out
    # nothing fetched from elsewhere
    assert not re.search(r"<script|<link|<img|src=|url\(|@import", out)
    assert out.count("http") == out.count('xmlns="http://www.w3.org/2000/svg"')
    assert "legacy v4.0" in out and "generic (rfc2015)" in out and "<svg" in out
    assert "changed" in out  # the stored signature (with " <b>") is not what it replays to now


def test_coverage_marks_what_the_findings_reached():
    row = FindingRow(SIG, "divergence", 1, 0.0, None, "r", S)
    out = page([row])
    rfc = block(out, "generic/rfc2015")
    hit = re.search(r'<tr class=(\w+)><td class=l title="line \d+">generic:mm_fault_error:sigbus</td>', rfc)
    assert hit and hit.group(1) == "hit"
    miss = re.search(r'<tr class=(\w+)><td class=l title="line \d+">generic:retry</td>', rfc)
    assert miss and miss.group(1) == "unreached"


def test_corpus_adds_coverage_and_a_missing_reproducer_is_reported():
    clean = replace(S, inject=(), ptes=())
    row = FindingRow("fake64: harness-error X", "harness-error", 1, 0.0, None, "r", None, "cannot load")
    out = page([row], [clean])
    assert "cannot load" in out
    hit = re.search(r'<tr class=(\w+)><td class=l title="line \d+">generic:account_minor</td>'
                    r'<td class=c>[^<]*</td><td class=c>(\d+)</td>', block(out, "generic/rfc2015"))
    assert hit and hit.group(1) == "hit" and int(hit.group(2)) >= 1
