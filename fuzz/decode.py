"""The stable bytes -> Scenario decoder: every input decodes to a valid scenario of the given arch.

Stability matters because users trade raw inputs: DECODER_VERSION changes whenever the meaning of
a byte changes, and `pfdiff repro` on a raw input uses this decoder. Bytes are consumed front to
back; running out of bytes reads zeros, so short inputs are simple scenarios.

Version 2 replaced version 1: raw inputs written for v1 still decode, but to different scenarios.
v2 can express every valid scenario (fuzz/encode.py is its inverse); v1 only a narrow family.
"""

# The v2 format. Most fields are a pick: one byte b, b < ESCAPE chooses table[b % len(table)]
# from a small table of interesting values (v1's distributions), b >= ESCAPE is followed by an
# explicit value: a base, gap or length is a word (big-endian) taken mod TASK_SIZE and rounded
# down to a page; an address is a word mod TASK_SIZE, counted from 0 or (after a second escape)
# from 2^word_bits - TASK_SIZE, or (after a second escape and RAW) any word;
# any other number 8 bytes (big-endian); a count as ByteReader.count() reads it (0-255). In order:
#   mode (chance), insn (choice), base (pick: region_bases | explicit)
#   VMAs: count (below(4) + chance(12) | count), then per VMA: gap after the previous end (pick:
#     0-2 pages | explicit), length (pick: 1-4 pages | explicit, at least a page), flags (prot choice +
#     growsdown, shared, locked chances | u64 raw VM flags), file (chance; then size pick: v1's
#     nine sizes | u64, and cache choice), pgoff (pick: default | u64)
#   PTEs: v1's scan of the span, a chance per page, then state and bits | count, then per PTE:
#     page (pick: index in the span | address), state (choice), bits (u8)
#   addr (v1's kinds: kernel probe page, span page + offset | address, exact)
#   sp (pick: v1's eight values derived from addr | address, exact)
#   task: flags byte, more byte, the chances of v1 (stack_rlimit: pick | u64)
#   cpu, only if the arch has features (pick: every feature, a chance each | present mask, value
#     mask, a bit per feature in arch order)
#   injections: count (pick: 0-3 | count), then each (pick: INJECTIONS | u64 VM_FAULT word)
# Where an explicit value would make the scenario invalid (a VMA below 0, over the user text page
# or past TASK_SIZE, a PTE on the text page or twice on one page), that item is dropped after its
# bytes are read, so the rest of the input keeps its meaning.

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from harness.arch import Arch
from harness.kernel.constants import (PAGE_MASK, PAGE_SIZE, VM_EXEC, VM_FAULT_HWPOISON,
                                      VM_FAULT_HWPOISON_LARGE, VM_FAULT_MAJOR, VM_FAULT_OOM,
                                      VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
                                      VM_GROWSDOWN, VM_LOCKED, VM_READ, VM_SHARED, VM_WRITE)
from harness.kernel.mm import FileBacking, Pte
from harness.scenario import CACHE_STATES, Scenario, TaskSpec, VmaSpec

DECODER_VERSION = 2

T = TypeVar("T")

ESCAPE = 0xF0  # a pick byte at or above this is followed by an explicit value
# After an address's second escape: any word follows. Neither 0x00 nor 0xFF, whose runs fill
# address words: a libFuzzer mutation that shifts bytes then rarely turns an encoded address into
# a raw, possibly non-canonical one.
RAW = 0xA5
U64 = 8        # bytes of an explicit number that is not an address

INJECTIONS: tuple[int | None, ...] = (
    None, None, None, 0, VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
    VM_FAULT_HWPOISON, VM_FAULT_HWPOISON_LARGE | (1 << 12), VM_FAULT_RETRY,
    VM_FAULT_RETRY | VM_FAULT_MAJOR, VM_FAULT_OOM | VM_FAULT_MAJOR,
    VM_FAULT_SIGBUS | VM_FAULT_MAJOR, VM_FAULT_HWPOISON_LARGE,
)
VMA_PROTS = (VM_READ, VM_READ | VM_WRITE, VM_READ | VM_EXEC, VM_READ | VM_WRITE | VM_EXEC, 0,
             VM_WRITE, VM_EXEC, VM_WRITE | VM_EXEC)
VMA_GAPS = (0, PAGE_SIZE, 2 * PAGE_SIZE)
VMA_LENGTHS = (PAGE_SIZE, 2 * PAGE_SIZE, 3 * PAGE_SIZE, 4 * PAGE_SIZE)
FILE_CUTS = (0, 1, 0x800)  # bytes short of a whole page at EOF
PGOFFS: tuple[int | None, ...] = (None,)  # None: the kernel's default for anon and file VMAs
SCAN_PAGES = 64  # v1's spans were at most 34 pages; v2's can be any size
PTE_STATES = ("present", "present", "present", "swap", "hwpoison", "protnone")
ADDR_OFFSETS = (0, 8, PAGE_SIZE - 8, PAGE_SIZE - 1, PAGE_SIZE - 4, 0x800)
RLIMITS = (0, PAGE_SIZE, 2 * PAGE_SIZE)
INJECT_COUNTS = (0, 1, 2, 3)


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

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]

    def chance(self, sixteenths: int) -> bool:
        """True with probability sixteenths/16."""
        return self.u8() % 16 < sixteenths

    def pick(self, table: Sequence[T], explicit: Callable[[], T]) -> T:
        """A value from the table, or (escape byte) whatever `explicit` reads next."""
        b = self.u8()
        return table[b % len(table)] if b < ESCAPE else explicit()

    def count(self) -> int:
        """An explicit count: 0-15 from one byte, any of 0-255 after a second escape (random
        bytes then rarely ask for hundreds of VMAs)."""
        return self.pick(range(16), self.u8)


def region_bases(arch: Arch) -> list[int]:
    """Places the decoder builds its VMAs around: low (near mmap_min_addr), middle, stack top."""
    lay = arch.layout
    mid = (lay.task_size // 2) & ~0xFFFFF
    return [lay.mmap_min_addr - 2 * PAGE_SIZE, 0x10000000 if lay.task_size > 0x20000000 else mid,
            mid, lay.user_top - 16 * PAGE_SIZE]


def file_sizes(npages: int) -> list[int]:
    """v1's file sizes for a VMA of npages: EOF 0-2 pages before its end, a whole page or not."""
    return [max(0, npages * PAGE_SIZE - k * PAGE_SIZE - cut) for k in range(3) for cut in FILE_CUTS]


def pte_from_bits(state: str, bits: int) -> Pte:
    # `user` and `young` are set when their bit is clear: zeros read past the end mean a normal PTE;
    # rsvd needs three bits so random bytes rarely set it.
    return Pte(state, write=bool(bits & 1), user=not bits & 2, exec=bool(bits & 4),
               dirty=bool(bits & 8), young=not bits & 16, rsvd=(bits & 0xE0) == 0xE0)


def sp_choices(arch: Arch, addr: int) -> list[int]:
    """The stack pointers v1 derives from addr: just above it, at the 64 KiB + 32 words stack
    cushion and one word past it, a page above, the stack top, just below, half a page above."""
    word = arch.word_bits // 8
    cushion = 65536 + 32 * word
    raw = [addr + 8 * word, addr + cushion, addr + cushion + 8 * word, addr + 4096,
           arch.layout.user_top, addr - 16, addr + 2048, addr + 2048 + 16]
    # The stack stays in user space: an sp past TASK_SIZE is #GP/#SS on x86, not a page fault.
    return [min(sp & ~(word - 1), arch.layout.task_size) & ((1 << arch.word_bits) - 1) for sp in raw]


def decode(data: bytes, arch: Arch) -> Scenario:
    r = ByteReader(data)
    lay = arch.layout
    word_bytes = arch.word_bits // 8
    word_mask = (1 << arch.word_bits) - 1
    text = lay.user_text

    def word() -> int:
        return r.uint(word_bytes)

    def user_pages() -> int:
        # Explicit bases, gaps and lengths: random words land in user space (page-aligned).
        return word() % lay.task_size & PAGE_MASK

    def address() -> int:
        # A user address (word mod TASK_SIZE); after a second escape one as far below the top of
        # the word as that (kernel space: the canonical upper half on x86-64), unless the next
        # byte is RAW: then any word. Random bytes then rarely give an address the arch's CPU
        # refuses (non-canonical on x86-64), which a fuzz campaign records as a harness error.
        if r.u8() < ESCAPE:
            return word() % lay.task_size
        if r.u8() != RAW:
            return word_mask + 1 - lay.task_size + word() % lay.task_size
        return word()

    def u64() -> int:
        return r.uint(U64)

    mode = "kernel" if r.chance(4) else "user"
    insn = r.choice(arch.instructions_for(mode)).name
    base = r.pick(region_bases(arch), user_pages)

    b = r.u8()
    nvmas = r.count() if b >= ESCAPE else b % 4 + (1 if r.chance(12) else 0)
    vmas: list[VmaSpec] = []
    cursor = base
    for _ in range(nvmas):
        start = cursor + r.pick(VMA_GAPS, user_pages)
        end = start + r.pick(VMA_LENGTHS, lambda: max(PAGE_SIZE, user_pages()))
        b = r.u8()
        if b >= ESCAPE:
            flags = u64()
        else:
            flags = VMA_PROTS[b % len(VMA_PROTS)]
            if r.chance(5):
                flags |= VM_GROWSDOWN
            if r.chance(2):
                flags |= VM_SHARED
            if r.chance(1):
                flags |= VM_LOCKED
        file = None
        if r.chance(5):
            size = r.pick(file_sizes((end - start) // PAGE_SIZE), u64)
            file = FileBacking(size, r.choice(CACHE_STATES))
        pgoff = r.pick(PGOFFS, u64)
        if start < text + PAGE_SIZE and text < end or end > lay.task_size or start < 0:
            continue  # invalid: dropped, and the next gap counts from the last VMA kept
        vmas.append(VmaSpec(start, end, flags, file, pgoff))
        cursor = end

    span_lo, span_hi = base - 2 * PAGE_SIZE, max(cursor, base) + 2 * PAGE_SIZE
    span_pages = (span_hi - span_lo) // PAGE_SIZE
    ptes: dict[int, Pte] = {}
    if r.u8() < ESCAPE:
        # v1's scan: each page of the span (its first SCAN_PAGES) may get a PTE, so the page
        # addr will land on often has one.
        for page in range(span_lo, span_lo + min(span_pages, SCAN_PAGES) * PAGE_SIZE, PAGE_SIZE):
            if page != text and 0 <= page < lay.task_size and r.chance(4):
                ptes[page] = pte_from_bits(r.choice(PTE_STATES), r.u8())
    else:
        for _ in range(r.count()):
            b = r.u8()
            if b < ESCAPE:
                page = span_lo + (b % span_pages) * PAGE_SIZE
                usable = 0 <= page < lay.task_size  # as the scan: no PTEs past user space
            else:
                page = address() & PAGE_MASK
                usable = True
            pte = pte_from_bits(r.choice(PTE_STATES), r.u8())
            if usable and page != text and page not in ptes:
                ptes[page] = pte

    spec = arch.catalogue[insn]
    b = r.u8()
    if b >= ESCAPE:
        addr = address()  # exactly as given: misaligned accesses are scenarios too
    else:
        kind = b % 8
        if kind == 7 and r.chance(8):
            addr = lay.kernel_fault_address + r.below(4) * PAGE_SIZE  # a kernel address
        else:
            page = span_lo + r.below(max(1, span_pages)) * PAGE_SIZE
            offset = r.choice(ADDR_OFFSETS + (r.below(256),))
            addr = page + offset
            if addr >= lay.task_size:  # the span ran past user space: aim at kernel space
                addr = lay.kernel_fault_address + (addr - lay.task_size)
        width_mask = ~(spec.width - 1) if spec.access != "fetch" else ~3
        addr &= width_mask & word_mask

    sp = r.pick(sp_choices(arch, addr), address)

    flags = r.u8()
    more = r.u8()
    task = TaskSpec(fatal_signal=bool(flags & 1) and r.chance(8), sig_on_uaccess_error=bool(flags & 2),
                    in_atomic=bool(flags & 4) and r.chance(6), no_mm=bool(flags & 8) and r.chance(4),
                    mmap_sem_contended=bool(flags & 16), extable=bool(flags & 32),
                    stack_rlimit=TaskSpec().stack_rlimit if not more & 1 else r.pick(RLIMITS, u64))

    features = arch.cpu_features
    cpu: tuple[tuple[str, bool], ...] = ()
    if features:
        if r.u8() < ESCAPE:
            cpu = tuple(sorted([(f, r.chance(8)) for f in features]))
        else:
            # A scenario may name only some features (absent is not the same scenario as false).
            nbytes = (len(features) + 7) // 8
            present, values = r.uint(nbytes), r.uint(nbytes)
            cpu = tuple(sorted((f, bool(values >> i & 1)) for i, f in enumerate(features)
                               if present >> i & 1))

    inject = tuple(r.pick(INJECTIONS, u64) for _ in range(r.pick(INJECT_COUNTS, r.count)))
    pte_list = tuple(sorted(ptes.items(), key=lambda p: p[0]))
    return Scenario(arch.name, mode, insn, addr, sp, tuple(vmas), pte_list, task, cpu, inject)


def decode_any(data: bytes, arches: Sequence[Arch]) -> Scenario:
    """The all-arches target: the first byte picks the arch, the rest is that arch's input."""
    if not data:
        return decode(b"", arches[0])
    return decode(data[1:], arches[data[0] % len(arches)])


__all__ = ["decode", "decode_any", "DECODER_VERSION"]
