"""ClusterFuzzLite packaging: the per-arch fuzzer rendered from the template runs under atheris
standalone and raises on a divergence; seeds and dictionary are valid; build.sh passes shellcheck."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fuzz import cflite

pytest.importorskip("arches.x86.cpu")
ROOT = Path(__file__).resolve().parent.parent


def _render(tmp: Path) -> Path:
    fuzzer = tmp / "x86_64_fuzzer.py"
    assert cflite.main(["render", "x86_64", str(fuzzer)]) == 0
    return fuzzer


def _run(fuzzer: Path, tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, str(fuzzer), *args], cwd=tmp, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_rendered_fuzzer_runs_standalone(tmp_path: Path) -> None:
    fuzzer = _render(tmp_path)
    assert os.access(fuzzer, os.X_OK) and "@ARCH@" not in fuzzer.read_text()
    r = _run(fuzzer, tmp_path, "-atheris_runs=50", "-seed=1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 50" in r.stderr or "Done" in r.stderr


def test_rendered_fuzzer_raises_on_a_divergence(tmp_path: Path) -> None:
    from arches import get_arch
    from fuzz.decode import decode
    from fuzz.smoke import Checker, seeded_inputs

    arch, checker = get_arch("x86_64"), Checker(None)
    for data in seeded_inputs(5, "x86_64", 2000):
        try:
            if checker.differ("rfc2015").run(decode(data, arch)).divergence:
                break
        except Exception:
            continue
    else:
        pytest.fail("no rfc2015 divergence in 2000 inputs")
    crash = tmp_path / "input"
    crash.write_bytes(data)
    fuzzer = _render(tmp_path)
    r = _run(fuzzer, tmp_path, str(crash), PFDIFF_GENERIC="rfc2015")  # a file argument: replay it
    assert r.returncode != 0
    assert "PfdiffDivergence: x86_64:" in r.stdout + r.stderr


def test_seed_corpus_and_dictionary(tmp_path: Path) -> None:
    z = tmp_path / "seeds.zip"
    assert cflite.main(["seeds", "x86_64", str(z)]) == 0
    with zipfile.ZipFile(z) as f:
        names = f.namelist()
        assert len(names) >= cflite.GENERATED_SEEDS
        assert all(re.fullmatch(r"[0-9a-f]{40}", n) for n in names)
    d = tmp_path / "x.dict"
    assert cflite.main(["dict", "x86_64", str(d)]) == 0
    entries = [ln for ln in d.read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r'[a-z0-9_]+="(\\x[0-9a-f]{2})+"', ln) for ln in entries)
    # VM_FAULT_RETRY (0x400) little-endian, as the kernel holds it
    assert 'vm_fault_retry="\\x00\\x04\\x00\\x00"' in entries


def test_unknown_arch_and_bad_usage() -> None:
    assert cflite.main(["render", "nope", "/dev/null"]) == 2
    assert cflite.main(["frobnicate"]) == 2


def test_build_script_is_valid_shell() -> None:
    script = ROOT / ".clusterfuzzlite" / "build.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    r = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
