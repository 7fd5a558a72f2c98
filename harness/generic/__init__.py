"""Generic page-fault handler variants: the RFC as posted (`rfc2015`), the corrected one (`fixed`),
or a user's own loaded as `module:function` with the same signature."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from ..arch import NativeFault
    from ..kernel import Kernel, Vma


class ArchFaultHooks(Protocol):
    """The arch side of the generic handler: what the RFC's <asm/fault.h> supplies.

    `stack_can_grow` and `instruction_pointer` (GET_IP) are in the posting. The `fixed` variant
    reads further optional hooks through `getattr` with a default, so an arch only names the
    hooks it needs; docs/generic-api.md lists them and why each exists.
    """

    def stack_can_grow(self, regs: "NativeFault", flags: int, address: int, vma: "Vma") -> bool: ...

    def instruction_pointer(self, regs: "NativeFault") -> int: ...


GenericPageFault = Callable[["Kernel", ArchFaultHooks, "NativeFault", int, int], int]


@dataclass(frozen=True)
class GenericVariant:
    name: str
    handler: GenericPageFault
    summary: str


class VariantError(ValueError):
    pass


BUILTIN = {
    "rfc2015": "harness.generic.rfc2015:generic_page_fault",
    "fixed": "harness.generic.fixed:generic_page_fault",
}


def load_variant(name: str) -> GenericVariant:
    """A built-in variant by name, or `module:function` for a user's own generic handler."""
    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise VariantError(f"unknown generic variant {name!r} (built in: {', '.join(BUILTIN)}; "
                           "or module:function)")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise VariantError(f"cannot import generic variant module {module_name!r}: {e}") from None
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise VariantError(f"{module_name} has no callable {attr!r}")
    doc = (getattr(module, "__doc__", None) or "").strip().splitlines()
    return GenericVariant(name, handler, doc[0] if doc else target)
