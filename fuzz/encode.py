"""The inverse of fuzz/decode.py: a Scenario -> raw fuzzer bytes that decode back to the same
scenario, or an EncodeError naming what the decoder cannot express."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Callable, Sequence

from harness.arch import Arch
from harness.kernel.constants import (PAGE_MASK, PAGE_SIZE, VM_EXEC, VM_GROWSDOWN, VM_LOCKED,
                                      VM_READ, VM_SHARED, VM_WRITE)
from harness.kernel.mm import Pte
from harness.scenario import CACHE_STATES, Scenario, ScenarioError, TaskSpec, validate_layout

from .decode import (ADDR_OFFSETS, DECODER_VERSION, ESCAPE, RAW, INJECT_COUNTS, INJECTIONS, PGOFFS,
                     PTE_STATES, SCAN_PAGES, RLIMITS, U64, VMA_GAPS, VMA_LENGTHS, VMA_PROTS, decode,
                     file_sizes, region_bases, sp_choices)

# Byte values that make ByteReader.chance(n) come out True / False.
YES, NO = 0, 15
MAX_COUNT = 255  # an explicit count (VMAs, PTEs, injections) is one byte
TABLE_FLAGS = VM_READ | VM_WRITE | VM_EXEC | VM_GROWSDOWN | VM_SHARED | VM_LOCKED


class EncodeError(ValueError):
    """The scenario has a part the decoder cannot produce; the message (one line) names it."""


def _canonical(s: Scenario) -> Scenario:
    # The order of PTEs and of cpu features carries no meaning (the kernel builds dicts of both);
    # the decoder emits them sorted.
    return replace(s, ptes=tuple(sorted(s.ptes, key=lambda p: p[0])),
                   cpu=tuple(sorted(s.cpu, key=lambda c: c[0])))


def _index(seq: Sequence, value: object, what: str) -> int:
    try:
        return list(seq).index(value)
    except ValueError:
        raise EncodeError(f"{what} {value!r} cannot be expressed by the decoder") from None


class ByteWriter:
    """The mirror of decode.ByteReader: each method writes what the reader's namesake reads."""

    def __init__(self) -> None:
        self.out = bytearray()

    def u8(self, b: int) -> None:
        self.out.append(b)

    def uint(self, value: int, nbytes: int, what: str) -> None:
        if not isinstance(value, int) or not 0 <= value < 1 << (8 * nbytes):
            raise EncodeError(f"{what} {value!r} does not fit the decoder's {8 * nbytes}-bit field")
        self.out += value.to_bytes(nbytes, "big")

    def user_pages(self, value: int, task_size: int, nbytes: int, what: str) -> None:
        """What the decoder reads back as `word mod TASK_SIZE` (page-aligned by then)."""
        if not 0 <= value < task_size:
            raise EncodeError(f"{what} {value:#x} is not below TASK_SIZE {task_size:#x}")
        self.uint(value, nbytes, what)

    def address(self, value: int, task_size: int, nbytes: int, what: str) -> None:
        """A user address, a kernel one within TASK_SIZE of the top, or any word (decode.address)."""
        top = (1 << (8 * nbytes)) - task_size
        if 0 <= value < task_size:
            self.u8(0)
        elif top <= value:
            self.out += bytes([ESCAPE, 0])
            value -= top
        else:
            self.out += bytes([ESCAPE, RAW])
        self.uint(value, nbytes, what)

    def chance(self, value: bool) -> None:
        self.u8(YES if value else NO)

    def pick(self, table: Sequence, value: object, explicit: Callable[[], None]) -> None:
        # `is` first: 0 == False and None must not match each other's table slots by accident.
        for i, t in enumerate(table):
            if t is value or (t is not None and value is not None and type(t) is type(value) and t == value):
                self.u8(i)
                return
        self.u8(ESCAPE)
        explicit()

    def count(self, n: int, what: str) -> None:
        if n > MAX_COUNT:
            raise EncodeError(f"{n} {what}: the decoder makes at most {MAX_COUNT}")
        self.pick(range(16), n, lambda: self.u8(n))


def _pte_bits(p: Pte) -> int:
    return ((1 if p.write else 0) | (0 if p.user else 2) | (4 if p.exec else 0)
            | (8 if p.dirty else 0) | (0 if p.young else 16) | (0xE0 if p.rsvd else 0))


def _encode_with_base(s: Scenario, arch: Arch, base_index: int | None, explicit_base: int) -> bytes:
    """`base_index` picks one of region_bases(); None writes `explicit_base` instead."""
    lay = arch.layout
    wb = arch.word_bits // 8
    w = ByteWriter()

    w.chance(s.mode == "kernel")
    w.u8(_index([i.name for i in arch.instructions_for(s.mode)], s.insn, "instruction"))
    if base_index is None:
        base = explicit_base
        w.u8(ESCAPE)
        w.user_pages(base, lay.task_size, wb, "base")
    else:
        base = region_bases(arch)[base_index]
        w.u8(base_index)

    n = len(s.vmas)
    if n <= 4:
        w.u8(min(n, 3))  # below(4) + chance(12)
        w.chance(n == 4)
    else:
        w.u8(ESCAPE)
        w.count(n, "VMAs")
    cursor = base
    for i, v in enumerate(s.vmas):
        gap, length = v.start - cursor, v.end - v.start
        if gap < 0:
            raise EncodeError(f"vmas[{i}] starts below the decoder's base {base:#x}")
        w.pick(VMA_GAPS, gap, lambda: w.user_pages(gap, lay.task_size, wb, f"vmas[{i}] gap"))
        w.pick(VMA_LENGTHS, length, lambda: w.user_pages(length, lay.task_size, wb, f"vmas[{i}] length"))
        if isinstance(v.flags, int) and not v.flags & ~TABLE_FLAGS:
            w.u8(VMA_PROTS.index(v.flags & (VM_READ | VM_WRITE | VM_EXEC)))
            w.chance(bool(v.flags & VM_GROWSDOWN))
            w.chance(bool(v.flags & VM_SHARED))
            w.chance(bool(v.flags & VM_LOCKED))
        else:
            w.u8(ESCAPE)
            w.uint(v.flags, U64, f"vmas[{i}] flags")
        w.chance(v.file is not None)
        if v.file is not None:
            size = v.file.size
            w.pick(file_sizes(length // PAGE_SIZE), size, lambda: w.uint(size, U64, f"vmas[{i}] file size"))
            w.u8(_index(CACHE_STATES, v.file.cache, f"vmas[{i}] file cache state"))
        pgoff = v.pgoff
        w.pick(PGOFFS, pgoff, lambda: w.uint(pgoff, U64, f"vmas[{i}] pgoff"))
        cursor = v.end

    span_lo, span_hi = base - 2 * PAGE_SIZE, max(cursor, base) + 2 * PAGE_SIZE
    span_pages = (span_hi - span_lo) // PAGE_SIZE
    w.out += _encode_ptes(s, arch, span_lo, span_pages)
    w.out += _encode_addr(s, arch, span_lo, span_pages)
    w.pick(sp_choices(arch, s.addr), s.sp, lambda: w.address(s.sp, lay.task_size, wb, "sp"))

    t = s.task
    flags = ((1 if t.fatal_signal else 0) | (2 if t.sig_on_uaccess_error else 0) | (4 if t.in_atomic else 0)
             | (8 if t.no_mm else 0) | (16 if t.mmap_sem_contended else 0) | (32 if t.extable else 0))
    default_rlimit = t.stack_rlimit == TaskSpec().stack_rlimit
    w.u8(flags)
    w.u8(0 if default_rlimit else 1)
    # the TaskSpec(...) keyword arguments are evaluated left to right: their extra bytes follow
    for on in (t.fatal_signal, t.in_atomic, t.no_mm):
        if on:
            w.chance(True)
    if not default_rlimit:
        w.pick(RLIMITS, t.stack_rlimit, lambda: w.uint(t.stack_rlimit, U64, "task.stack_rlimit"))

    features = arch.cpu_features
    if features:
        cpu = dict(s.cpu)
        if len(cpu) != len(s.cpu):
            raise EncodeError("cpu names a feature twice: the decoder names each at most once")
        if set(cpu) == set(features):
            w.u8(0)
            for f in features:
                w.chance(bool(cpu[f]))
        else:
            nbytes = (len(features) + 7) // 8
            present = sum(1 << i for i, f in enumerate(features) if f in cpu)
            values = sum(1 << i for i, f in enumerate(features) if cpu.get(f))
            w.u8(ESCAPE)
            w.uint(present, nbytes, "cpu")
            w.uint(values, nbytes, "cpu")

    w.pick(INJECT_COUNTS, len(s.inject), lambda: w.count(len(s.inject), "injections"))
    for i, v in enumerate(s.inject):
        w.pick(INJECTIONS, v, lambda: w.uint(v, U64, f"inject[{i}]"))
    return bytes(w.out).rstrip(b"\x00")  # the decoder reads zeros past the end


def _encode_ptes(s: Scenario, arch: Arch, span_lo: int, span_pages: int) -> bytes:
    """The shorter of v1's scan of the span (when every PTE lies on a page it scans) and the
    explicit list."""
    lay = arch.layout
    wb = arch.word_bits // 8
    forms: list[bytes] = []
    scan_hi = span_lo + min(span_pages, SCAN_PAGES) * PAGE_SIZE
    if all(span_lo <= page < scan_hi and 0 <= page < lay.task_size for page, _ in s.ptes):
        ptes = dict(s.ptes)
        w = ByteWriter()
        w.u8(0)
        for page in range(span_lo, scan_hi, PAGE_SIZE):
            if page != lay.user_text and 0 <= page < lay.task_size:
                p = ptes.get(page)
                w.chance(p is not None)
                if p is not None:
                    w.u8(_index(PTE_STATES, p.state, "PTE state"))
                    w.u8(_pte_bits(p))
        forms.append(bytes(w.out))
    w = ByteWriter()
    w.u8(ESCAPE)
    w.count(len(s.ptes), "PTEs")
    for i, (page, p) in enumerate(s.ptes):
        k = (page - span_lo) // PAGE_SIZE
        if span_lo <= page < span_lo + span_pages * PAGE_SIZE and k < ESCAPE and 0 <= page < lay.task_size:
            w.u8(k)
        else:
            w.u8(ESCAPE)
            w.address(page, lay.task_size, wb, f"ptes[{i}] address")
        w.u8(_index(PTE_STATES, p.state, f"ptes[{i}] state"))
        w.u8(_pte_bits(p))
    forms.append(bytes(w.out))
    return min(forms, key=len)


def _encode_addr(s: Scenario, arch: Arch, span_lo: int, span_pages: int) -> bytes:
    """The shortest of the decoder's forms of addr: a kernel probe page, a page of the span plus
    one of its offsets (searched, because the decoder masks to the access width, moves an address
    past TASK_SIZE to kernel space and wraps at the word size), or the explicit word."""
    lay = arch.layout
    spec = arch.catalogue[s.insn]
    word_mask = (1 << arch.word_bits) - 1
    mask = (~(spec.width - 1) if spec.access != "fetch" else ~3) & word_mask
    kfa = lay.kernel_fault_address
    addr = s.addr
    for k in range(4):
        if (kfa + k * PAGE_SIZE) & mask == addr:
            return bytes([7, YES, k])

    def decoded(page: int, off: int) -> int:
        a = page + off
        if a >= lay.task_size:
            a = kfa + (a - lay.task_size)
        return a & mask

    n = max(1, span_pages)
    index_bytes = 1 if n <= 256 else 2
    offsets = [(j, off, 0) for j, off in enumerate(ADDR_OFFSETS)]
    offsets += [(len(ADDR_OFFSETS), off, off) for off in range(256)]
    for j, off, eager in offsets:
        k0 = (addr - off - span_lo) // PAGE_SIZE
        for k in (k0, k0 + 1):
            if 0 <= k < min(n, 1 << (8 * index_bytes)) and decoded(span_lo + k * PAGE_SIZE, off) == addr:
                return bytes([0]) + k.to_bytes(index_bytes, "big") + bytes([eager, j])
    w = ByteWriter()
    w.u8(ESCAPE)
    w.address(addr, lay.task_size, arch.word_bits // 8, "addr")
    return bytes(w.out)


def _first_difference(got: Scenario, want: Scenario) -> str:
    for f in fields(Scenario):
        if getattr(got, f.name) != getattr(want, f.name):
            return f.name
    return "nothing"


def encode(scenario: Scenario, arch: Arch) -> bytes:
    """Bytes that decode(…, arch) turns back into this scenario (PTE and cpu order aside)."""
    if scenario.arch != arch.name:
        raise EncodeError(f"the scenario is for {scenario.arch}, not {arch.name}")
    from harness.diff import check_scenario  # not at import time: the harness loads lazily
    try:
        validate_layout(scenario)
        check_scenario(scenario, arch)
    except ScenarioError as e:
        raise EncodeError(f"not a valid scenario: {e}") from None
    want = _canonical(scenario)
    # The base is only where the first gap and the PTE and addr tables count from: try each
    # region base and an explicit one (the first VMA's start, else addr's page); keep the shortest.
    explicit = want.vmas[0].start if want.vmas else want.addr & PAGE_MASK
    bases: list[int | None] = list(range(len(region_bases(arch))))
    if explicit < arch.layout.task_size:
        bases.append(None)
    best: bytes | None = None
    error: EncodeError | None = None
    for base_index in bases:
        try:
            data = _encode_with_base(want, arch, base_index, explicit)
        except EncodeError as e:
            error = e  # the explicit base's error (tried last) does not depend on the base
            continue
        got = decode(data, arch)
        if got != want:  # a disagreement between decoder and encoder: a bug, named for its fixer
            field = _first_difference(got, want)
            error = EncodeError(f"internal: the bytes decode back with a different {field}")
            continue
        if best is None or len(data) < len(best):
            best = data
    if best is None:
        raise error or EncodeError("no encoding found")
    return best


def encode_any(scenario: Scenario, arches: Sequence[Arch]) -> bytes:
    """For the all-arches target (decode_any): the first byte picks the arch."""
    names = [a.name for a in arches]
    i = _index(names, scenario.arch, "arch")
    return bytes([i]) + encode(scenario, arches[i])


__all__ = ["encode", "encode_any", "EncodeError", "DECODER_VERSION"]
