"""Corpus management with libFuzzer semantics: merge and prune (through a fuzz.target worker run
with -merge=1), conversion between raw inputs and scenario JSON, and seeding a campaign."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.scenario import Scenario, ScenarioError

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "corpus" / "seeds"


class CorpusError(ValueError):
    """A corpus operation that cannot be done as asked; one line."""


def raw_name(data: bytes) -> str:
    """libFuzzer's own corpus file name: the SHA-1 of the contents."""
    return hashlib.sha1(data).hexdigest()


def _arches(arch: str):
    from arches import arch_names, get_arch
    names = arch_names() if arch == "all" else [arch]
    if arch != "all" and arch not in arch_names():
        raise CorpusError(f"unknown arch {arch!r} (known: {', '.join(arch_names())}, all)")
    return [get_arch(n) for n in names]


def to_raw(scenario: Scenario, target: str = "arch") -> bytes:
    """Encode for the scenario's own arch target, or (`all`) for the all-arches target."""
    from .encode import encode, encode_any
    arches = _arches("all" if target == "all" else scenario.arch)
    return encode_any(scenario, arches) if target == "all" else encode(scenario, arches[0])


def from_raw(data: bytes, arch: str) -> Scenario:
    from .decode import decode, decode_any
    arches = _arches(arch)
    return decode_any(data, arches) if arch == "all" else decode(data, arches[0])


def seed_corpus(arch: str, corpus: Path, seeds: Path = SEEDS) -> tuple[int, list[str]]:
    """Convert corpus/seeds/<arch>/*.json into raw inputs in a campaign's corpus directory.

    Returns (inputs written, one line per seed that could not be used). Existing files are
    never touched: a raw input is named by its SHA-1, so a seed already there is skipped.
    """
    from .encode import EncodeError
    written, skipped = 0, []
    names = [a.name for a in _arches(arch)]
    for name in names:
        for path in sorted((seeds / name).glob("*.json")):
            try:
                data = to_raw(Scenario.loads(path.read_text()), "all" if arch == "all" else "arch")
            except (ScenarioError, EncodeError, OSError, UnicodeDecodeError) as e:
                skipped.append(f"{path.name}: {e}")
                continue
            out = corpus / raw_name(data)
            if not out.exists():
                _write_new(out, data)
                written += 1
    return written, skipped


def _write_new(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- merge and prune ---------------------------------------------------------------------------

WRAPPER = """#!{python}
import sys
sys.path.insert(0, {root!r})
from fuzz.target import main
main()
"""


@dataclass(frozen=True)
class MergeResult:
    before: int   # inputs in OUT before
    after: int    # inputs in OUT after
    offered: int  # inputs in the IN directories
    log: str


def _count(d: Path) -> int:
    return sum(1 for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) if d.is_dir() else 0


def _stage_json(d: Path, tmp: Path, target: str) -> Path:
    """libFuzzer reads every file as raw bytes: scenario JSON in an input directory is encoded
    first (into a scratch copy), so a seed directory can be merged as it is."""
    jsons = sorted(d.glob("*.json"))
    if not jsons:
        return d
    staged = Path(tempfile.mkdtemp(prefix="stage-", dir=tmp))
    for p in sorted(d.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".json":
            try:
                data = to_raw(Scenario.loads(p.read_text()), target)
            except Exception as e:  # noqa: BLE001 - reported, the merge goes on without it
                print(f"pfdiff: skipping {p}: {e}", file=sys.stderr)
                continue
            (staged / raw_name(data)).write_bytes(data)
        else:
            shutil.copyfile(p, staged / p.name)
    return staged


def merge(out: Path, inputs: Sequence[Path], arch: str, variant: str = "rfc2015",
          findings: Path | None = None, extra: Sequence[str] = ()) -> MergeResult:
    """libFuzzer -merge=1: keep the inputs of `inputs` that add coverage to `out`."""
    _arches(arch)
    for d in inputs:
        if not d.is_dir():
            raise CorpusError(f"{d}: not a directory")
    out.mkdir(parents=True, exist_ok=True)
    before = _count(out)
    with tempfile.TemporaryDirectory(prefix="pfdiff-merge-") as t:
        tmp = Path(t)
        # -merge re-executes argv[0]: it must be an executable script (atheris issue #53).
        wrapper = tmp / "pfdiff-target"
        wrapper.write_text(WRAPPER.format(python=sys.executable, root=str(ROOT)))
        wrapper.chmod(0o755)
        staged = [_stage_json(d, tmp, "all" if arch == "all" else "arch") for d in inputs]
        fdir = findings or tmp / "findings"  # divergences seen while merging are kept only if asked
        cmd = [str(wrapper), f"--arch={arch}", f"--generic={variant}", f"--findings={fdir}",
               "-merge=1", f"-merge_control_file={tmp / 'merge.ctl'}", f"-artifact_prefix={tmp}/",
               *extra, str(out), *map(str, staged)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        offered = sum(_count(d) for d in staged)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CorpusError(f"libFuzzer merge failed (exit {proc.returncode}): {tail[0]}")
        return MergeResult(before, _count(out), offered, proc.stderr)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two directories in one step, where the kernel allows it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    return fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def prune(directory: Path, arch: str, variant: str = "rfc2015") -> MergeResult:
    """Merge DIR into an empty directory and put that in DIR's place; on any failure DIR stays."""
    if not directory.is_dir():
        raise CorpusError(f"{directory}: not a directory")
    parent = directory.resolve().parent
    fresh = Path(tempfile.mkdtemp(prefix=f".{directory.name}.prune-", dir=parent))
    try:
        result = merge(fresh, [directory], arch, variant)
        if result.offered and not result.after:
            raise CorpusError("the merge kept nothing; the corpus is left as it was")
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if _exchange(fresh, directory):
        shutil.rmtree(fresh)  # now holds the old corpus
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=parent))
        os.rmdir(old)
        os.rename(directory, old)
        os.rename(fresh, directory)
        shutil.rmtree(old)
    return result
