"""The arch registry: one line per arch, naming the module attribute that is its harness.arch.Arch.

Adding an arch is one folder under arches/ and one line here; nothing else names an arch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.arch import Arch

REGISTRY: dict[str, str] = {
    "x86_64": "arches.x86:X86_64",
    "i386": "arches.x86:I386",
    "ppc64": "arches.powerpc:PPC64",
    "ppc32": "arches.powerpc:PPC32",
    "arm64": "arches.arm64:ARM64",
    "arm": "arches.arm:ARM",
    "riscv64": "arches.riscv:RISCV64",
}


class UnknownArch(ValueError):
    pass


def arch_names() -> list[str]:
    return list(REGISTRY)


def get_arch(name: str) -> "Arch":
    target = REGISTRY.get(name)
    if target is None:
        raise UnknownArch(f"unknown arch {name!r} (known: {', '.join(REGISTRY)})")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
