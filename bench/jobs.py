"""Executions per second of a campaign with --jobs 1 against --jobs 2 for the same --time.

Usage: python bench/jobs.py [--time 20] [--arch x86_64] [--generic rfc2015] [--jobs 1,2]
Each run starts from empty corpus and findings directories (in a temporary directory), so both
pay the same start-up; the figure is all workers' executions over the campaign's wall time.
For reference it measures two ceilings: how much more work two pure-Python busy loops get done
than one, and how many executions N fully independent fuzz.target processes (own corpus, own
findings, no campaign parent) manage; the second is what sharing costs are judged against.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import time
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.campaign import Campaign, CampaignConfig  # noqa: E402


def measure(arch: str, generic: str, jobs: int, seconds: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="pfdiff-bench-") as tmp:
        cfg = CampaignConfig(arch, generic, Path(tmp) / "findings", Path(tmp) / "corpus",
                             seconds=seconds, seed=1, jobs=jobs, progress="quiet")
        result = Campaign(cfg, out=io.StringIO()).run()
        return result.execs, result.elapsed


def _spin(seconds: float, out) -> None:
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        for _ in range(10000):
            n += 1
    out.put(n)


def ceiling(procs: int, seconds: float = 3.0) -> int:
    """Loop iterations `procs` busy processes complete in `seconds`."""
    q: multiprocessing.Queue = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=_spin, args=(seconds, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total


def independent(arch: str, generic: str, procs: int, seconds: int) -> int:
    """Total executions of `procs` unrelated fuzz.target processes running side by side."""
    import re
    import subprocess

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    with tempfile.TemporaryDirectory(prefix="pfdiff-bench-") as tmp:
        ps = []
        for i in range(procs):
            (Path(tmp) / f"c{i}").mkdir()
            ps.append(subprocess.Popen(
                [sys.executable, "-m", "fuzz.target", f"--arch={arch}", f"--generic={generic}",
                 f"--findings={tmp}/f{i}", f"-max_total_time={seconds}", f"-seed={i + 1}",
                 "-print_final_stats=1", f"{tmp}/c{i}"], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True))
        total = 0
        for p in ps:
            _, err = p.communicate()
            m = re.search(r"stat::number_of_executed_units:\s*(\d+)", err)
            total += int(m.group(1)) if m else 0
        return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time", type=int, default=20)
    p.add_argument("--arch", default="x86_64")
    p.add_argument("--generic", default="rfc2015")
    p.add_argument("--jobs", default="1,2", help="comma list of job counts")
    p.add_argument("--no-independent", action="store_true", help="skip the independent-process ceiling")
    args = p.parse_args()
    print(f"cpus: {os.cpu_count()}  arch: {args.arch}  generic: {args.generic}  time: {args.time}s")
    one, two = ceiling(1), ceiling(2)
    print(f"machine ceiling: 2 busy processes do {two / one:.2f}x the work of 1")
    base = None
    for jobs in (int(j) for j in args.jobs.split(",")):
        execs, elapsed = measure(args.arch, args.generic, jobs, args.time)
        rate = execs / elapsed
        base = base or rate
        print(f"--jobs {jobs}: {execs} executions in {elapsed:.1f}s = {rate:.0f} exec/s  ({rate / base:.2f}x)")
    if not args.no_independent:
        solo = None
        for n in (int(j) for j in args.jobs.split(",")):
            execs = independent(args.arch, args.generic, n, args.time)
            solo = solo or execs
            print(f"{n} independent fuzz.target process(es): {execs / args.time:.0f} exec/s  "
                  f"({execs / solo:.2f}x)")


if __name__ == "__main__":
    main()
