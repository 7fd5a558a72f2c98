"""A pytest plugin that replays a pfdiff crash corpus, one test per scenario file, so a kernel tree's CI can run it with plain pytest.

Enabled through the `pytest11` entry point when pfdiff is installed (or `-p fuzz.pytest_plugin`);
inert unless `--pfdiff-corpus DIR` is given. Every `*.json` under DIR is one test item:
- with `--pfdiff-generic rfc2015` it must diverge with the signature recorded in its `.sig`
  sidecar (see fuzz/smoke.py);
- with any other variant (default `fixed`; or a tree's own handler as `module:function`) it must
  not diverge, unless a triage suppression (`--pfdiff-triage`) names the divergence.
A failure shows the side-by-side report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pfdiff", "replay a pfdiff crash corpus")
    group.addoption("--pfdiff-corpus", metavar="DIR", type=Path,
                    help="collect every *.json scenario under DIR as a test")
    group.addoption("--pfdiff-generic", metavar="VARIANT", default="fixed",
                    help="generic variant: rfc2015 (expect the recorded signature), fixed (default) "
                         "or module:function (expect no divergence)")
    group.addoption("--pfdiff-triage", metavar="FILE", type=Path, default=None,
                    help="triage TOML with known-divergence suppressions")


def pytest_configure(config: pytest.Config) -> None:
    corpus = config.getoption("pfdiff_corpus")
    if corpus is None:
        return
    if not corpus.is_dir():
        raise pytest.UsageError(f"--pfdiff-corpus {corpus}: not a directory")
    from harness.generic import VariantError, load_variant
    try:
        load_variant(config.getoption("pfdiff_generic"))
    except VariantError as e:
        raise pytest.UsageError(f"--pfdiff-generic: {e}") from None
    # The corpus is collected even when it is outside the paths given on the command line.
    resolved = corpus.resolve()
    if not any(resolved == Path(a).resolve() or resolved.is_relative_to(Path(a).resolve())
               for a in config.args if Path(a).exists()):
        config.args.append(str(corpus))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    corpus = parent.config.getoption("pfdiff_corpus")
    if corpus is None or file_path.suffix != ".json":
        return None
    if not file_path.resolve().is_relative_to(corpus.resolve()):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    def collect(self):
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class PfdiffFailure(Exception):
    def __init__(self, message: str, report: str) -> None:
        super().__init__(message)
        self.message, self.report = message, report


_checkers: dict[Any, Any] = {}


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        from .smoke import Checker, read_expectation

        config = self.config
        key = config.getoption("pfdiff_triage")
        if key not in _checkers:  # one Differ (and CPU per arch) for the whole session
            _checkers[key] = Checker(key)
        variant = config.getoption("pfdiff_generic")
        expected = read_expectation(self.path).signature if variant == "rfc2015" else None
        ok, message, report = _checkers[key].check(self.path, variant, expected)
        if not ok:
            raise PfdiffFailure(message, report)

    def repr_failure(self, excinfo, style=None):  # type: ignore[override]
        if isinstance(excinfo.value, PfdiffFailure):
            return f"{self.path}: {excinfo.value.message}\n\n{excinfo.value.report}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"pfdiff[{self.config.getoption('pfdiff_generic')}]: {self.path.name}"
