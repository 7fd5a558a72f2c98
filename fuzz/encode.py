"""The inverse of fuzz/decode.py: a Scenario -> raw fuzzer bytes that decode back to the same
scenario, or an EncodeError naming what the decoder cannot express."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from harness.arch import Arch
from harness.kernel.constants import PAGE_MASK, PAGE_SIZE, VM_GROWSDOWN, VM_LOCKED, VM_SHARED
from harness.scenario import CACHE_STATES, Scenario, TaskSpec

from .decode import DECODER_VERSION, INJECTIONS, VMA_PROTS, decode, region_bases

PTE_STATE_INDEX = {"present": 0, "swap": 3, "hwpoison": 4, "protnone": 5}
# Byte values that make ByteReader.chance(n) come out True / False.
YES, NO = 0, 15


class EncodeError(ValueError):
    """The scenario has a part the decoder cannot produce; the message (one line) names it."""


def _canonical(s: Scenario) -> Scenario:
    # The order of PTEs carries no meaning (the kernel builds a dict); the decoder emits them sorted.
    return replace(s, ptes=tuple(sorted(s.ptes, key=lambda p: p[0])))


def _index(seq: Sequence, value: object, what: str) -> int:
    try:
        return list(seq).index(value)
    except ValueError:
        raise EncodeError(f"{what} {value!r} cannot be expressed by the decoder") from None


def _encode_with_base(s: Scenario, arch: Arch, base_index: int,
                      phantom: tuple[int, int] | None = None) -> bytes:
    """`phantom` (gap, pages): one more VMA that the decoder reads and then rejects (below page 0,
    over the text page, beyond TASK_SIZE); its gap still moves the span the PTEs and addr use."""
    out = bytearray()
    out.append(NO if s.mode == "user" else YES)  # chance(4): True means kernel
    out.append(_index([i.name for i in arch.instructions_for(s.mode)], s.insn, "instruction"))
    out.append(base_index)
    base = region_bases(arch)[base_index]

    n = len(s.vmas) + (phantom is not None)
    if n > 4:
        raise EncodeError(f"{len(s.vmas)} VMAs: the decoder makes at most 4")
    out += bytes([min(n, 3), YES if n == 4 else NO])  # below(4) + chance(12)
    cursor = base
    for i, v in enumerate(s.vmas):
        gap, rem = divmod(v.start - cursor, PAGE_SIZE)
        npages, rem2 = divmod(v.end - v.start, PAGE_SIZE)
        if rem or rem2 or not 0 <= gap <= 2:
            raise EncodeError(f"vmas[{i}] does not start 0-2 pages after the previous one")
        if not 1 <= npages <= 4:
            raise EncodeError(f"vmas[{i}] has {npages} pages: the decoder makes 1-4")
        prot = v.flags & ~(VM_GROWSDOWN | VM_SHARED | VM_LOCKED)
        out += bytes([gap, npages - 1, _index(VMA_PROTS, prot, f"vmas[{i}] protection flags"),
                      YES if v.flags & VM_GROWSDOWN else NO, YES if v.flags & VM_SHARED else NO,
                      YES if v.flags & VM_LOCKED else NO])
        if v.pgoff is not None:
            raise EncodeError(f"vmas[{i}] has an explicit pgoff: the decoder uses the default")
        if v.file is None:
            out.append(NO)
        else:
            for k in range(3):
                for j, cut in enumerate((0, 1, 0x800)):
                    if max(0, npages * PAGE_SIZE - k * PAGE_SIZE - cut) == v.file.size:
                        out += bytes([YES, k, j, CACHE_STATES.index(v.file.cache)])
                        break
                else:
                    continue
                break
            else:
                raise EncodeError(f"vmas[{i}] file size {v.file.size:#x} is not one the decoder makes")
        cursor = v.end
    if phantom is not None:
        out += bytes([phantom[0], phantom[1] - 1, 0, NO, NO, NO, NO])
        cursor += phantom[0] * PAGE_SIZE

    span_lo, span_hi = base - 2 * PAGE_SIZE, max(cursor, base) + 2 * PAGE_SIZE
    ptes = dict(s.ptes)
    text = arch.layout.user_text
    for addr in ptes:
        if not span_lo <= addr < span_hi:
            raise EncodeError(f"PTE at {addr:#x} is outside the pages the decoder fills")
    page = span_lo
    while page < span_hi:
        if page != text and 0 <= page < arch.layout.task_size:
            p = ptes.get(page)
            if p is None:
                out.append(NO)
            else:
                bits = ((1 if p.write else 0) | (0 if p.user else 2) | (4 if p.exec else 0)
                        | (8 if p.dirty else 0) | (0 if p.young else 16) | (0xE0 if p.rsvd else 0))
                out += bytes([YES, PTE_STATE_INDEX[p.state], bits])
        page += PAGE_SIZE

    # addr: the decoder's kernel-address form, or a page of the span plus one of its offsets
    spec = arch.catalogue[s.insn]
    word_mask = (1 << arch.word_bits) - 1
    mask = (~(spec.width - 1) if spec.access != "fetch" else ~3) & word_mask
    kfa = arch.layout.kernel_fault_address
    kernel_off = s.addr - kfa
    if 0 <= kernel_off < 4 * PAGE_SIZE and kernel_off % PAGE_SIZE == 0 and kfa & mask == kfa:
        out += bytes([7, YES, kernel_off // PAGE_SIZE])
    else:
        out += _encode_addr(s.addr, span_lo, max(1, (span_hi - span_lo) // PAGE_SIZE), mask, word_mask,
                            arch.layout.task_size, kfa)

    word = arch.word_bits // 8
    cushion = 65536 + 32 * word
    a = s.addr
    options = [a + 8 * word, a + cushion, a + cushion + 8 * word, a + 4096, arch.layout.user_top,
               a - 16, a + 2048, a + 2048 + 16]
    for j, sp in enumerate(options):
        if min(sp & ~(word - 1), arch.layout.task_size) & word_mask == s.sp:
            out.append(j)
            break
    else:
        raise EncodeError(f"sp {s.sp:#x} is not one the decoder derives from addr")

    t = s.task
    flags = ((1 if t.fatal_signal else 0) | (2 if t.sig_on_uaccess_error else 0) | (4 if t.in_atomic else 0)
             | (8 if t.no_mm else 0) | (16 if t.mmap_sem_contended else 0) | (32 if t.extable else 0))
    rlimits = (0, PAGE_SIZE, 2 * PAGE_SIZE)
    if t.stack_rlimit == TaskSpec().stack_rlimit:
        more = b"\x00"
    elif t.stack_rlimit in rlimits:
        more = None
    else:
        raise EncodeError(f"task.stack_rlimit {t.stack_rlimit:#x} is not one the decoder makes")
    out += bytes([flags, 0 if more is not None else 1])
    # the TaskSpec(...) keyword arguments are evaluated left to right: their extra bytes follow
    if t.fatal_signal:
        out.append(YES)
    if t.in_atomic:
        out.append(YES)
    if t.no_mm:
        out.append(YES)
    if more is None:
        out.append(rlimits.index(t.stack_rlimit))

    cpu = dict(s.cpu)
    if set(cpu) != set(arch.cpu_features):
        raise EncodeError("cpu: the decoder sets every feature of the arch "
                          f"({', '.join(arch.cpu_features) or 'none'}) explicitly")
    out += bytes(YES if cpu[f] else NO for f in arch.cpu_features)

    if len(s.inject) > 3:
        raise EncodeError(f"{len(s.inject)} injections: the decoder makes at most 3")
    out.append(len(s.inject))
    for i, v in enumerate(s.inject):
        out.append(_index(INJECTIONS, v, f"inject[{i}]"))
    return bytes(out).rstrip(b"\x00")  # the decoder reads zeros past the end


def _encode_addr(addr: int, span_lo: int, npages: int, mask: int, word_mask: int,
                 task_size: int, kfa: int) -> bytes:
    """kind byte, page index, the eagerly read below(256) byte, the offset choice: searched,
    because the decoder's page may be negative, an address past TASK_SIZE is moved to the
    kernel fault address, and the sum wraps at the word size."""
    if npages > 256:
        raise EncodeError("the decoder's address span is wider than one byte can index")

    def decoded(page: int, off: int) -> int:
        a = page + off
        if a >= task_size:
            a = kfa + (a - task_size)
        return a & mask & word_mask

    fixed = (0, 8, PAGE_SIZE - 8, PAGE_SIZE - 1, PAGE_SIZE - 4, 0x800)
    for k in range(npages):
        page = span_lo + k * PAGE_SIZE
        for j, off in enumerate(fixed):
            if decoded(page, off) == addr:
                return bytes([0, k, 0, j])
        for off in range(256):
            if decoded(page, off) == addr:
                return bytes([0, k, off, len(fixed)])
    raise EncodeError(f"addr {addr:#x} is not a page and offset the decoder picks")


LAYOUT_ERRORS = ("does not start", "outside the pages", "is not a page and offset")


def _most_telling(errors: list[EncodeError]) -> EncodeError:
    """Each region base fails on placement first; a failure that does not depend on the base
    (flags, sizes, features) is the one that says what the decoder cannot express."""
    for e in errors:
        if not any(m in str(e) for m in LAYOUT_ERRORS):
            return e
    return errors[0]


def encode(scenario: Scenario, arch: Arch) -> bytes:
    """Bytes that decode(…, arch) turns back into this scenario (PTE order aside)."""
    if scenario.arch != arch.name:
        raise EncodeError(f"the scenario is for {scenario.arch}, not {arch.name}")
    if scenario.insn not in arch.catalogue:
        raise EncodeError(f"instruction {scenario.insn!r} is not in the {arch.name} catalogue")
    want = _canonical(scenario)
    errors: list[EncodeError] = []
    # Any of the decoder's region bases may fit; take the first whose bytes decode back exactly.
    phantoms = [None] + [(g, n) for g in range(3) for n in range(1, 5)]
    for phantom in phantoms:
        for base_index in range(len(region_bases(arch))):
            try:
                data = _encode_with_base(want, arch, base_index, phantom)
            except EncodeError as e:
                errors.append(e)
                continue
            if decode(data, arch) == want:
                return data
            errors.append(EncodeError("the decoder reads these bytes back as a different scenario"))
    raise _most_telling(errors) if errors else EncodeError("no encoding found")


def encode_any(scenario: Scenario, arches: Sequence[Arch]) -> bytes:
    """For the all-arches target (decode_any): the first byte picks the arch."""
    names = [a.name for a in arches]
    i = _index(names, scenario.arch, "arch")
    return bytes([i]) + encode(scenario, arches[i])


__all__ = ["encode", "encode_any", "EncodeError", "DECODER_VERSION"]
