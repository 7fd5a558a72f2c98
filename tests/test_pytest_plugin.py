"""The pytest plugin replays a crash corpus: one item per scenario file, failing with the report
when the recorded expectation no longer holds."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from fuzz import smoke

pytest_plugins = ["pytester"]
pytest.importorskip("arches.x86.cpu")

# When pfdiff is installed the entry point loads the plugin already; naming it again would clash.
_INSTALLED = any(ep.value == "fuzz.pytest_plugin" for ep in entry_points(group="pytest11"))
PLUGIN = [] if _INSTALLED else ["-p", "fuzz.pytest_plugin"]


def _scenarios():
    from arches import get_arch
    from fuzz.decode import decode

    arch, checker = get_arch("x86_64"), smoke.Checker(None)
    div = same = None
    for data in smoke.seeded_inputs(3, "x86_64", 2000):
        s = decode(data, arch)
        try:
            r, f = checker.differ("rfc2015").run(s), checker.differ("fixed").run(s)
        except Exception:
            continue
        if f.divergence is None:
            if r.divergence is not None and div is None:
                div = (s, r.divergence.signature)
            if r.divergence is None and same is None:
                same = s
        if div and same:
            return div, same
    pytest.fail("no suitable scenarios")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    (div, sig), same = _scenarios()
    d = tmp_path / "crashes" / "x86_64"
    d.mkdir(parents=True)
    (d / "a.json").write_text(div.dumps())
    (d / "a.sig").write_text(sig + "\n")
    (d / "b.json").write_text(div.dumps())
    (d / "b.sig").write_text("x86_64: a signature it does not give\n")
    (d / "c.json").write_text(same.dumps())
    (d / "c.sig").write_text(sig + "\n")
    return tmp_path / "crashes"


def test_rfc2015_items_pass_and_fail_per_file(pytester: pytest.Pytester, corpus: Path) -> None:
    result = pytester.runpytest(*PLUGIN, "--pfdiff-corpus", str(corpus), "--pfdiff-generic", "rfc2015",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*b.json: rfc2015: signature changed*", "*c.json: rfc2015: no longer diverges*"])
    result.stdout.fnmatch_lines(["*legacy*"])  # the side-by-side report is shown


def test_fixed_expects_no_divergence(pytester: pytest.Pytester, corpus: Path) -> None:
    result = pytester.runpytest(*PLUGIN, "--pfdiff-corpus", str(corpus), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_trees_own_broken_handler_fails(pytester: pytest.Pytester, corpus: Path) -> None:
    # a tree's generic handler (module:function) that answers every fault with SIGBUS
    pytester.makepyfile(tree_generic="def generic_page_fault(k, hooks, regs, flags, address):\n"
                                     "    from harness.kernel.constants import VM_FAULT_SIGBUS\n"
                                     "    return VM_FAULT_SIGBUS\n")
    pytester.syspathinsert()
    result = pytester.runpytest(*PLUGIN, "--pfdiff-corpus", str(corpus), "--pfdiff-generic",
                                "tree_generic:generic_page_fault", "-p", "no:cacheprovider")
    assert result.parseoutcomes().get("failed", 0) >= 2
    result.stdout.fnmatch_lines(["*diverges: x86_64:*"])


def test_inert_without_option_and_bad_options_are_usage_errors(pytester: pytest.Pytester, corpus: Path) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider").assert_outcomes(passed=1)
    r = pytester.runpytest(*PLUGIN, "--pfdiff-corpus", str(corpus / "nope"))
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r = pytester.runpytest(*PLUGIN, "--pfdiff-corpus", str(corpus), "--pfdiff-generic", "nope")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
