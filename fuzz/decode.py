"""The stable bytes -> Scenario decoder: every input decodes to a valid scenario of the given arch.

Stability matters because users trade raw inputs: DECODER_VERSION changes whenever the meaning of
a byte changes, and `pfdiff repro` on a raw input uses this decoder. Bytes are consumed front to
back; running out of bytes reads zeros, so short inputs are simple scenarios.
"""

from __future__ import annotations

from typing import Sequence

from harness.arch import Arch
from harness.kernel.constants import (PAGE_SIZE, VM_EXEC, VM_FAULT_HWPOISON,
                                      VM_FAULT_HWPOISON_LARGE, VM_FAULT_MAJOR, VM_FAULT_OOM,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
                                      VM_GROWSDOWN, VM_LOCKED, VM_READ, VM_SHARED, VM_WRITE)
from harness.kernel.mm import FileBacking, Pte
from harness.scenario import CACHE_STATES, Scenario, TaskSpec, VmaSpec

DECODER_VERSION = 1

INJECTIONS: tuple[int | None, ...] = (
    None, None, None, 0, VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
    VM_FAULT_HWPOISON, VM_FAULT_HWPOISON_LARGE | (1 << 12), VM_FAULT_RETRY,
    VM_FAULT_RETRY | VM_FAULT_MAJOR, VM_FAULT_OOM | VM_FAULT_MAJOR,
    VM_FAULT_SIGBUS | VM_FAULT_MAJOR, VM_FAULT_HWPOISON_LARGE,
)
VMA_PROTS = (VM_READ, VM_READ | VM_WRITE, VM_READ | VM_EXEC, VM_READ | VM_WRITE | VM_EXEC, 0,
             VM_WRITE, VM_EXEC, VM_WRITE | VM_EXEC)


class ByteReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def uint(self, nbytes: int) -> int:
        v = 0
        for _ in range(nbytes):
            v = (v << 8) | self.u8()
        return v

    def below(self, n: int) -> int:
        return self.u8() % n if n <= 256 else self.uint(2) % n

    def choice(self, seq: Sequence):
        return seq[self.below(len(seq))]

    def chance(self, sixteenths: int) -> bool:
        """True with probability sixteenths/16."""
        return self.u8() % 16 < sixteenths


def region_bases(arch: Arch) -> list[int]:
    """Places the decoder builds its VMAs around: low (near mmap_min_addr), middle, stack top."""
    lay = arch.layout
    mid = (lay.task_size // 2) & ~0xFFFFF
    return [lay.mmap_min_addr - 2 * PAGE_SIZE, 0x10000000 if lay.task_size > 0x20000000 else mid,
            mid, lay.user_top - 16 * PAGE_SIZE]


def decode(data: bytes, arch: Arch) -> Scenario:
    r = ByteReader(data)
    mode = "kernel" if r.chance(4) else "user"
    insn = r.choice(arch.instructions_for(mode)).name
    base = r.choice(region_bases(arch))
    text = arch.layout.user_text

    vmas: list[VmaSpec] = []
    cursor = base
    for _ in range(r.below(4) + (1 if r.chance(12) else 0)):
        cursor += r.below(3) * PAGE_SIZE
        npages = 1 + r.below(4)
        flags = r.choice(VMA_PROTS)
        if r.chance(5):
            flags |= VM_GROWSDOWN
        if r.chance(2):
            flags |= VM_SHARED
        if r.chance(1):
            flags |= VM_LOCKED
        file = None
        if r.chance(5):
            size = max(0, npages * PAGE_SIZE - r.below(3) * PAGE_SIZE - r.choice((0, 1, 0x800)))
            file = FileBacking(size, r.choice(CACHE_STATES))
        start, end = cursor, cursor + npages * PAGE_SIZE
        if start < text + PAGE_SIZE and text < end or end > arch.layout.task_size or start <= 0:
            break
        vmas.append(VmaSpec(start, end, flags, file))
        cursor = end

    span_lo, span_hi = base - 2 * PAGE_SIZE, max(cursor, base) + 2 * PAGE_SIZE
    ptes: list[tuple[int, Pte]] = []
    page = span_lo
    while page < span_hi:
        if page != text and 0 <= page < arch.layout.task_size and r.chance(4):
            state = r.choice(("present", "present", "present", "swap", "hwpoison", "protnone"))
            bits = r.u8()
            ptes.append((page, Pte(state, write=bool(bits & 1), user=not bits & 2, exec=bool(bits & 4),
                                   dirty=bool(bits & 8), young=not bits & 16, rsvd=(bits & 0xE0) == 0xE0)))
        page += PAGE_SIZE

    kind = r.below(8)
    if kind == 7 and r.chance(8):
        addr = arch.layout.kernel_fault_address + r.below(4) * PAGE_SIZE  # a kernel address
    else:
        page = span_lo + r.below(max(1, (span_hi - span_lo) // PAGE_SIZE)) * PAGE_SIZE
        offset = r.choice((0, 8, PAGE_SIZE - 8, PAGE_SIZE - 1, PAGE_SIZE - 4, 0x800, r.below(256)))
        addr = page + offset
        if addr >= arch.layout.task_size:  # the span ran past user space: aim at kernel space
            addr = arch.layout.kernel_fault_address + (addr - arch.layout.task_size)
    insn_spec = arch.catalogue[insn]
    width_mask = ~(insn_spec.width - 1) if insn_spec.access != "fetch" else ~3
    addr &= width_mask & ((1 << arch.word_bits) - 1)

    sp_choice = r.below(8)
    word = arch.word_bits // 8
    cushion = 65536 + 32 * word
    sp = {0: addr + 8 * word, 1: addr + cushion, 2: addr + cushion + 8 * word, 3: addr + 4096,
          4: arch.layout.user_top, 5: addr - 16, 6: addr + 2048, 7: addr + 2048 + 16}[sp_choice]
    # The stack stays in user space: an sp past TASK_SIZE is #GP/#SS on x86, not a page fault.
    sp = min(sp & ~(word - 1), arch.layout.task_size) & ((1 << arch.word_bits) - 1)

    flags = r.u8()
    more = r.u8()
    task = TaskSpec(fatal_signal=bool(flags & 1) and r.chance(8), sig_on_uaccess_error=bool(flags & 2),
                    in_atomic=bool(flags & 4) and r.chance(6), no_mm=bool(flags & 8) and r.chance(4),
                    mmap_sem_contended=bool(flags & 16), extable=bool(flags & 32),
                    stack_rlimit=(8 << 20) if not more & 1 else r.choice((0, PAGE_SIZE, 2 * PAGE_SIZE)))
    cpu = tuple(sorted((f, r.chance(8)) for f in arch.cpu_features))
    inject = tuple(r.choice(INJECTIONS) for _ in range(r.below(4)))
    return Scenario(arch.name, mode, insn, addr, sp, tuple(vmas), tuple(ptes), task, cpu, inject)


def decode_any(data: bytes, arches: Sequence[Arch]) -> Scenario:
    """The all-arches target: the first byte picks the arch, the rest is that arch's input."""
    if not data:
        return decode(b"", arches[0])
    return decode(data[1:], arches[data[0] % len(arches)])


__all__ = ["decode", "decode_any", "DECODER_VERSION", "VM_EXEC"]
