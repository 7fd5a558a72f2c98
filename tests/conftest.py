"""Shared builders for harness tests: a Kernel from a few VMAs and PTEs, no CPU involved."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.kernel import Kernel, KernelConfig, MmStruct, Pte, Task, Vma  # noqa: E402
from harness.kernel.mm import MmLimits  # noqa: E402


def make_kernel(vmas: list[Vma], ptes: dict[int, Pte] | None = None, *, inject=(), fatal=False,
                contended=False, extable=frozenset(), limits: MmLimits | None = None) -> Kernel:
    mm = MmStruct(sorted(vmas, key=lambda v: v.start), dict(ptes or {}), limits or MmLimits())
    return Kernel(mm, Task(fatal_signal=fatal), KernelConfig(1 << 47), inject=tuple(inject),
                  mmap_sem_contended=contended, extable=frozenset(extable))
