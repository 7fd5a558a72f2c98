"""Address-space records of the simulated kernel: page-table entries, VMAs, and mm_struct with
find_vma/expand_stack as mm/mmap.c v4.0 implements them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from .constants import (EPERM, ENOMEM, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, VM_GROWSDOWN,
                        VM_LOCKED)

PteState = Literal["present", "swap", "hwpoison", "protnone"]
CacheState = Literal["cached", "absent", "locked"]


@dataclass(frozen=True)
class Pte:
    """An arch-neutral last-level page-table entry; each arch's CPU encodes it natively.

    `state` covers pte_present(), the two non-present, non-none kinds that reach do_swap_page()
    (a swap entry and a hwpoison entry), and a PROT_NONE entry, which the CPU sees as not present
    but pte_present() accepts (pte_protnone()). A missing entry is pte_none().
    `rsvd` sets a reserved bit (x86 PF_RSVD); `user` is the U/S (or AP/PR) bit.
    """

    state: PteState = "present"
    write: bool = False
    user: bool = True
    exec: bool = False
    dirty: bool = False
    young: bool = True
    rsvd: bool = False

    @property
    def present(self) -> bool:
        return self.state == "present"


@dataclass(frozen=True)
class FileBacking:
    """The file behind a file-backed VMA: its i_size and the page-cache state of its pages."""

    size: int
    cache: CacheState = "cached"


@dataclass
class Vma:
    """struct vm_area_struct, reduced to what the fault paths read."""

    start: int
    end: int
    flags: int
    file: FileBacking | None = None
    pgoff: int = 0
    page_cache: dict[int, CacheState] = field(default_factory=dict)  # pgoff -> state, once changed

    def contains(self, address: int) -> bool:
        return self.start <= address < self.end


@dataclass(frozen=True)
class MmLimits:
    """The per-task limits expand_stack() consults (RLIMIT_STACK, RLIMIT_MEMLOCK, mmap_min_addr)."""

    stack_rlimit: int = 8 << 20
    memlock_rlimit: int = 64 << 10
    mmap_min_addr: int = 65536


@dataclass
class MmStruct:
    """struct mm_struct: the VMA list (sorted by start), the page table and the counters."""

    vmas: list[Vma]
    ptes: dict[int, Pte]
    limits: MmLimits = field(default_factory=MmLimits)
    locked_vm: int = 0

    def find_vma(self, address: int) -> Vma | None:
        """mm/mmap.c v4.0 find_vma(): the first VMA with vm_end > address, or None."""
        for vma in self.vmas:
            if address < vma.end:
                return vma
        return None

    def prev_vma(self, vma: Vma) -> Vma | None:
        i = self.vmas.index(vma)
        return self.vmas[i - 1] if i else None

    def expand_stack(self, vma: Vma, address: int) -> int:
        """mm/mmap.c v4.0 expand_stack() (non-GROWSUP build, L2323): returns 0 or -errno."""
        address &= PAGE_MASK
        prev = self.prev_vma(vma)
        if prev is not None and prev.end == address and not prev.flags & VM_GROWSDOWN:
            return -ENOMEM
        return self.expand_downwards(vma, address)

    def expand_downwards(self, vma: Vma, address: int) -> int:
        """mm/mmap.c v4.0 expand_downwards() (L2217) with acct_stack_growth() (L2089)."""
        address &= PAGE_MASK
        # security_mmap_addr() -> cap_mmap_addr(): below mmap_min_addr without CAP_SYS_RAWIO.
        if address < self.limits.mmap_min_addr:
            return -EPERM
        if address >= vma.start:
            return 0  # somebody else already expanded it
        size = vma.end - address
        grow = (vma.start - address) >> PAGE_SHIFT
        if grow > vma.pgoff:
            return -ENOMEM
        error = self.acct_stack_growth(vma, size, grow)
        if error:
            return error
        if vma.flags & VM_LOCKED:
            self.locked_vm += grow
        vma.start = address
        vma.pgoff -= grow
        return 0

    def acct_stack_growth(self, vma: Vma, size: int, grow: int) -> int:
        """mm/mmap.c v4.0 acct_stack_growth(): the stack and memlock rlimits.

        may_expand_vm, is_hugepage_only_range and security_vm_enough_memory_mm always pass here:
        the simulated address space has no RLIMIT_AS and no hugetlb-only ranges.
        """
        actual_size = size - PAGE_SIZE if size else size
        if actual_size > self.limits.stack_rlimit:
            return -ENOMEM
        if vma.flags & VM_LOCKED:
            if self.locked_vm + grow > self.limits.memlock_rlimit >> PAGE_SHIFT:
                return -ENOMEM
        return 0

    def set_pte(self, address: int, pte: Pte) -> None:
        self.ptes[address & PAGE_MASK] = pte

    def pte(self, address: int) -> Pte | None:
        return self.ptes.get(address & PAGE_MASK)

    def copy(self) -> "MmStruct":
        return MmStruct([replace(v, page_cache=dict(v.page_cache)) for v in self.vmas], dict(self.ptes),
                        self.limits, self.locked_vm)
