"""Scenarios per second on x86_64: (a) replaying scenarios without atheris, (b) fuzzing under
atheris, (c) the bare Unicorn executions of the same scenarios; prints the figures.

Usage: python bench/bench_x86.py [--seconds S] [--fidelity mmu|hooked]
The scenarios are the seed corpus plus decoded pseudo-random inputs (fixed seed), so (a) and (c)
measure the same work with and without the models.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arches import get_arch  # noqa: E402
from fuzz.decode import decode  # noqa: E402
from harness.arch import CpuRun  # noqa: E402
from harness.diff import Differ, build_kernel  # noqa: E402
from harness.generic import load_variant  # noqa: E402
from harness.scenario import Scenario  # noqa: E402


def scenarios(arch_name: str, n: int) -> list[Scenario]:
    arch = get_arch(arch_name)
    seeds = [Scenario.loads(p.read_text()) for p in sorted((ROOT / "corpus" / "seeds" / arch_name).glob("*.json"))]
    rng = random.Random(1)
    rand = [decode(bytes(rng.randrange(256) for _ in range(64)), arch) for _ in range(n - len(seeds))]
    return seeds + rand


def rate(fn, items, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for item in items:
            fn(item)
        done += len(items)
    return done / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--fidelity", choices=("mmu", "hooked"), default="mmu")
    ap.add_argument("--arch", default="x86_64")
    args = ap.parse_args()
    arch = get_arch(args.arch)
    items = scenarios(args.arch, 200)
    differ = Differ(load_variant("rfc2015"), fidelity=args.fidelity)
    a = rate(differ.run, items, args.seconds)

    cpu = differ.cpu(arch)

    def bare(s: Scenario) -> None:
        k = build_kernel(s, arch)
        cpu.execute(CpuRun(s.insn, s.mode, s.addr, s.sp, k.mm.ptes if k.mm else {}, s.cpu_features))

    c = rate(bare, items, args.seconds)

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fuzz.target", f"--arch={args.arch}", "--generic=rfc2015",
               f"--findings={tmp}/findings", f"--fidelity={args.fidelity}",
               f"-max_total_time={int(args.seconds)}", "-print_final_stats=1", f"{tmp}/corpus"]
        Path(f"{tmp}/corpus").mkdir()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stderr
        m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
        t = re.search(r"stat::average_exec_per_sec:\s*(\d+)", out)
        b = float(t.group(1)) if t else float("nan")
        units = m.group(1) if m else "?"

    print(f"{args.arch} ({args.fidelity}), {len(items)} scenarios")
    print(f"  (a) replay, legacy + generic, no atheris : {a:9.0f} scenarios/s")
    print(f"  (b) fuzzing under atheris                : {b:9.0f} execs/s ({units} in {args.seconds:.0f}s)")
    print(f"  (c) bare Unicorn, one execute each       : {c:9.0f} scenarios/s")
    print(f"  model overhead over emulation            : {a and c / a:9.1f}x slower than (c)")


if __name__ == "__main__":
    main()
