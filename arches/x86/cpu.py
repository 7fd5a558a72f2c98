"""The x86 CPU: runs one catalogue instruction in Unicorn (x86_64 with real 4-level page tables or
hooked flat memory, i386 hooked) and reports the #PF the emulated CPU raised as an X86Fault."""

from __future__ import annotations

import ctypes
import functools
import struct
from dataclasses import dataclass
from typing import Literal, Mapping

from unicorn import (UC_ARCH_X86, UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH, UC_HOOK_INTR, UC_HOOK_MEM_INVALID,
                     UC_HOOK_MEM_READ,
                     UC_MEM_FETCH_PROT, UC_MEM_FETCH_UNMAPPED, UC_MEM_READ_PROT, UC_MEM_READ_UNMAPPED,
                     UC_MEM_WRITE_PROT, UC_MEM_WRITE_UNMAPPED, UC_MODE_32, UC_MODE_64, UC_PROT_ALL,
                     UC_PROT_EXEC, UC_PROT_NONE, UC_PROT_READ, UC_PROT_WRITE, UC_TLB_CPU, Uc, UcError)
from unicorn import x86_const as R

from harness.scenario import ScenarioError
from harness.arch import CpuRun, Fidelity, Instruction, Layout, NativeFault
from harness.kernel.mm import Pte

# -- architectural constants (Intel SDM vol. 3A §4.7, Linux arch/x86/mm/fault.c names) ------------

PF_PROT, PF_WRITE, PF_USER, PF_RSVD, PF_INSTR = 0x1, 0x2, 0x4, 0x8, 0x10
X86_EFLAGS_IF = 0x200
X86_EFLAGS_AC = 0x40000
_EFLAGS_FIXED = 0x2          # bit 1 always reads as 1
_USER_EFLAGS = _EFLAGS_FIXED | X86_EFLAGS_IF

# Linux's segment selectors, so `cs` reads as the kernel's user_mode() expects.
X86_64_KERNEL_CS, X86_64_KERNEL_DS, X86_64_USER32_CS, X86_64_USER_DS, X86_64_USER_CS = 0x10, 0x18, 0x23, 0x2B, 0x33
I386_KERNEL_CS, I386_USER_CS = 0x60, 0x73

PAGE = 0x1000
PAGE_MASK = ~(PAGE - 1)

LAYOUT_X86_64 = Layout(task_size=0x00007FFFFFFFF000, user_text=0x400000,
                       kernel_text=0xFFFFFFFF81000000, user_top=0x7FFFFFFFF000)
LAYOUT_I386 = Layout(task_size=0xC0000000, user_text=0x08048000, kernel_text=0xC1000000, user_top=0xBFFFF000)

Variant = Literal["x86_64", "i386"]


class UnsupportedRun(ScenarioError):
    """A run this CPU cannot execute faithfully (non-canonical address, overlap with the CPU's own
    pages, an instruction not meant for the mode). The message is one line."""


@dataclass(frozen=True)
class X86Fault(NativeFault):
    """What the CPU hands do_page_fault(): the error code pushed on the stack, CR2, and pt_regs.

    `insn` is the faulting catalogue instruction's bytes; for an instruction-fetch fault the kernel
    reads at regs->ip, which is the (unreadable) fetch target, so it is b"".
    """

    error_code: int
    cr2: int
    ip: int
    sp: int
    cs: int
    flags: int


# -- the instruction catalogue --------------------------------------------------------------------
# Register convention: the target address is in rax/eax (rdi/rsi for string instructions), the
# stack pointer is run.sp; see _registers(). Each instruction lives at its own fixed slot of the
# text page followed by int3, so the code never changes and completion is the int3 trap.

Setup = Literal["addr", "stack", "str_dst", "str_src", "fetch"]
_BOTH = ("user", "kernel")
_USER = ("user",)


@dataclass(frozen=True)
class _Spec:
    name: str
    enc64: bytes | None     # None: not available on x86_64
    enc32: bytes | None     # None: not available on i386
    access: str
    width64: int
    width32: int
    modes: tuple[str, ...]
    setup: Setup
    summary: str


_SPECS: tuple[_Spec, ...] = (
    _Spec("load8", b"\x8a\x00", b"\x8a\x00", "read", 1, 1, _BOTH, "addr", "mov al, [rax]: 1-byte load"),
    _Spec("load16", b"\x66\x8b\x00", b"\x66\x8b\x00", "read", 2, 2, _BOTH, "addr", "mov ax, [rax]: 2-byte load"),
    _Spec("load32", b"\x8b\x00", b"\x8b\x00", "read", 4, 4, _BOTH, "addr", "mov eax, [rax]: 4-byte load"),
    _Spec("load64", b"\x48\x8b\x00", None, "read", 8, 0, _BOTH, "addr", "mov rax, [rax]: 8-byte load"),
    _Spec("store8", b"\x88\x08", b"\x88\x08", "write", 1, 1, _BOTH, "addr", "mov [rax], cl: 1-byte store"),
    _Spec("store16", b"\x66\x89\x08", b"\x66\x89\x08", "write", 2, 2, _BOTH, "addr", "mov [rax], cx: 2-byte store"),
    _Spec("store32", b"\x89\x08", b"\x89\x08", "write", 4, 4, _BOTH, "addr", "mov [rax], ecx: 4-byte store"),
    _Spec("store64", b"\x48\x89\x08", None, "write", 8, 0, _BOTH, "addr", "mov [rax], rcx: 8-byte store"),
    # RMW: Unicorn runs TCG non-parallel, so even xchg and lock cmpxchg are a load then a store.
    # A not-present page therefore faults as a read (W=0) and a read-only page on the store
    # (W=1); real CPUs may report the write intent already on the not-present fault.
    _Spec("add", b"\x01\x08", b"\x01\x08", "rmw", 4, 4, _BOTH, "addr", "add [rax], ecx: read-modify-write"),
    _Spec("xchg", b"\x87\x08", b"\x87\x08", "rmw", 4, 4, _BOTH, "addr", "xchg [rax], ecx: implicitly locked swap"),
    _Spec("lock_cmpxchg", b"\xf0\x0f\xb1\x08", b"\xf0\x0f\xb1\x08", "rmw", 4, 4, _BOTH, "addr",
          "lock cmpxchg [rax], ecx: locked compare-exchange"),
    _Spec("inc", b"\xff\x00", b"\xff\x00", "rmw", 4, 4, _BOTH, "addr", "inc dword [rax]: read-modify-write"),
    # Stack instructions are user-only: a kernel push faulting on its own stack is a double fault,
    # not a page fault the handler sees.
    _Spec("push", b"\x51", b"\x51", "write", 8, 4, _USER, "stack", "push rcx: store at sp-word"),
    _Spec("call", b"\xe8\x00\x00\x00\x00", b"\xe8\x00\x00\x00\x00", "write", 8, 4, _USER, "stack",
          "call next: the return-address push at sp-word faults; the target is the next slot byte"),
    # enter with a 64 KiB frame: QEMU (and the SDM pseudocode) push rbp at sp-word first, then set
    # sp = sp - word - 0xffff without touching the new frame, so only [sp-word] can fault.
    _Spec("enter", b"\xc8\xff\xff\x00", b"\xc8\xff\xff\x00", "write", 8, 4, _USER, "stack",
          "enter 0xffff, 0: push rbp at sp-word, then sp -= 0xffff (the frame itself is not touched)"),
    # pusha: QEMU stores from the lowest address up (edi at esp-32 first), so a fault anywhere in
    # the 32 bytes reports the lowest address in the first inaccessible page.
    _Spec("pusha", None, b"\x60", "write", 0, 32, _USER, "stack",
          "pusha: eight 4-byte stores from esp-32 (QEMU order: lowest address first)"),
    _Spec("jmp_reg", b"\xff\xe0", b"\xff\xe0", "fetch", 1, 1, _BOTH, "fetch",
          "jmp rax: instruction fetch at addr (fault ip = addr)"),
    _Spec("call_reg", b"\xff\xd0", b"\xff\xd0", "fetch", 1, 1, _USER, "fetch",
          "call rax: pushes the return address at sp-word, then fetches at addr"),
    _Spec("rep_movsb", b"\xf3\xa4", b"\xf3\xa4", "write", 1, 1, _BOTH, "str_dst",
          "rep movsb, rdi=addr-8 rcx=16: copy_to_user-style stores crossing into addr's page"),
    _Spec("rep_stosb", b"\xf3\xaa", b"\xf3\xaa", "write", 1, 1, _BOTH, "str_dst",
          "rep stosb, rdi=addr-8 rcx=16: clear_user-style stores crossing into addr's page"),
    _Spec("rep_movsb_load", b"\xf3\xa4", b"\xf3\xa4", "read", 1, 1, _BOTH, "str_src",
          "rep movsb, rsi=addr-8 rcx=16: copy_from_user-style loads crossing into addr's page"),
)

_SLOT = 32            # bytes per instruction slot in the text page
_SRC_OFFSET = 0x800   # 16 readable bytes in the text page: the source of rep_movsb
_ENTRY_OFFSET = 0xF00  # kernel text: the sysretq stub; user text: the CPL3 prologue (mmu mode)
_FILL = 0xCC          # int3: data frames and slot padding, so any successful fetch stops at once
_FILL64 = 0xCCCCCCCCCCCCCCCC


def _catalogue(bits: int) -> dict[str, Instruction]:
    out: dict[str, Instruction] = {}
    for s in _SPECS:
        enc = s.enc64 if bits == 64 else s.enc32
        if enc is None:
            continue
        summary = s.summary if bits == 64 else _to_32(s.summary)
        out[s.name] = Instruction(s.name, enc, s.access, summary, s.modes,  # type: ignore[arg-type]
                                  s.width64 if bits == 64 else s.width32)
    return out


def _to_32(text: str) -> str:
    for a, b in (("rax", "eax"), ("rcx", "ecx"), ("rdi", "edi"), ("rsi", "esi"), ("rbp", "ebp")):
        text = text.replace(a, b)
    return text


CATALOGUE_X86_64: dict[str, Instruction] = _catalogue(64)
CATALOGUE_I386: dict[str, Instruction] = _catalogue(32)
_SETUP: dict[str, Setup] = {s.name: s.setup for s in _SPECS}
_SLOT_OF: dict[str, int] = {s.name: i * _SLOT for i, s in enumerate(_SPECS)}


def _text_page(catalogue: Mapping[str, Instruction]) -> bytes:
    page = bytearray([_FILL]) * PAGE
    for name, insn in catalogue.items():
        off = _SLOT_OF[name]
        page[off:off + len(insn.encoding)] = insn.encoding
    return bytes(page)


# -- the address space both fidelities share ------------------------------------------------------

@dataclass(frozen=True)
class _ArchDef:
    bits: int
    layout: Layout
    catalogue: Mapping[str, Instruction]
    user_cs: int
    kernel_cs: int
    addr_mask: int

    def owned(self) -> dict[int, Pte]:
        """The pages the CPU owns (run.ptes entries for them are ignored): the two text pages, a
        scratch page next to each (rep_movsb_load's destination) and the GDT page. Shared; do not
        mutate."""
        cached = _OWNED.get(self.bits)
        if cached is not None:
            return cached
        u, k = self.layout.user_text, self.layout.kernel_text
        cached = _OWNED[self.bits] = {
            u: Pte(user=True, exec=True),
            u + PAGE: Pte(write=True, user=True, dirty=True),
            k: Pte(user=False, exec=True),
            k + PAGE: Pte(write=True, user=False, dirty=True),
            k + 2 * PAGE: Pte(user=False),
        }
        return cached


_OWNED: dict[int, dict[int, Pte]] = {}


_ARCH: dict[str, _ArchDef] = {
    "x86_64": _ArchDef(64, LAYOUT_X86_64, CATALOGUE_X86_64, X86_64_USER_CS, X86_64_KERNEL_CS, (1 << 64) - 1),
    "i386": _ArchDef(32, LAYOUT_I386, CATALOGUE_I386, I386_USER_CS, I386_KERNEL_CS, (1 << 32) - 1),
}


def owned_pages(variant: Variant) -> tuple[int, ...]:
    """Virtual pages the CPU maps itself; scenarios must not place data, stacks or targets there."""
    return tuple(sorted(_ARCH[variant].owned()))


@dataclass(frozen=True)
class _Features:
    nx: bool
    smep: bool
    smap: bool
    ac: bool

    @staticmethod
    def of(f: Mapping[str, bool]) -> "_Features":
        # Absent features are off: the scenario states what the CPU has.
        return _Features(bool(f.get("nx", False)), bool(f.get("smep", False)),
                         bool(f.get("smap", False)), bool(f.get("ac", False)))


def allowed(pte: Pte, kind: str, user: bool, f: _Features) -> bool:
    """SDM vol. 3A §4.6 access rights for a present, reserved-bit-free 4 KiB page whose upper
    levels grant everything; CR0.WP=1 as Linux runs. `kind` is read/write/fetch."""
    if user and not pte.user:
        return False                                   # §4.6.1: supervisor-mode address
    if kind == "fetch":
        if f.nx and not pte.exec:
            return False                               # XD=1 with IA32_EFER.NXE=1
        if not user and f.smep and pte.user:
            return False                               # CR4.SMEP: no supervisor fetch from user pages
        return True
    if not user and pte.user and f.smap and not f.ac:
        return False                                   # CR4.SMAP with EFLAGS.AC=0
    if kind == "write":
        return pte.write                               # WP=1: supervisor writes honour R/W too
    return True


def error_code(kind: str, cls: str, user: bool, f: _Features) -> int:
    """SDM vol. 3A §4.7: the #PF error code for an access of `kind` that failed with fault class
    `cls` (notpresent / prot / rsvd)."""
    code = {"notpresent": 0, "prot": PF_PROT, "rsvd": PF_PROT | PF_RSVD}[cls]
    if kind == "write":
        code |= PF_WRITE
    if user:
        code |= PF_USER
    # I/D is set for fetches only when NX (PAE/4-level paging with EFER.NXE) or SMEP is enabled.
    if kind == "fetch" and (f.nx or f.smep):
        code |= PF_INSTR
    return code


@dataclass
class _Prepared:
    spec: Instruction
    setup: Setup
    user: bool
    entry: int
    table: dict[int, Pte]
    regs: dict[str, int]
    features: _Features


def _prepare(a: _ArchDef, run: CpuRun) -> _Prepared:
    spec = a.catalogue.get(run.insn)
    if spec is None:
        raise UnsupportedRun(f"unknown instruction {run.insn!r} for {a.bits}-bit x86")
    if run.mode not in spec.modes:
        raise UnsupportedRun(f"{run.insn} is not meaningful in {run.mode} mode")
    setup = _SETUP[run.insn]
    m = a.addr_mask
    addr, sp = run.addr, run.sp
    if not (0 <= addr <= m and 0 <= sp <= m):
        raise UnsupportedRun(f"address out of range for {a.bits}-bit x86: addr={addr:#x} sp={sp:#x}")
    # The pages this instruction can touch: the stack below sp for pushes, around addr otherwise.
    touched = [(sp - 32) & m, (sp - 1) & m] if setup == "stack" or run.insn == "call_reg" else []
    if setup in ("addr", "fetch"):
        touched += [addr, (addr + 15) & m]
    elif setup in ("str_dst", "str_src"):
        touched += [(addr - 8) & m, (addr + 7) & m]
    if a.bits == 64:
        for t in touched + [sp]:
            if not _canonical(t):
                raise UnsupportedRun(f"non-canonical address {t:#x} (#GP, not #PF)")
    owned = a.owned()
    for t in touched:
        if t & PAGE_MASK & m in owned:
            raise UnsupportedRun(f"address {t:#x} is on a page the CPU owns")
    table = {page & PAGE_MASK & m: pte for page, pte in run.ptes.items()}
    table.update(owned)
    user = run.mode == "user"
    text = a.layout.user_text if user else a.layout.kernel_text
    word_fill = _FILL64 & m
    regs = {"ax": addr, "cx": word_fill, "di": 0, "si": 0, "bp": word_fill, "sp": sp}
    if setup == "str_dst":
        regs.update(ax=word_fill, cx=16, di=(addr - 8) & m, si=text + _SRC_OFFSET)
    elif setup == "str_src":
        regs.update(ax=word_fill, cx=16, si=(addr - 8) & m, di=text + PAGE)
    return _Prepared(spec, setup, user, text + _SLOT_OF[run.insn], table, regs, _Features.of(run.features))


def _canonical(va: int) -> bool:
    top = va >> 47
    return top == 0 or top == (1 << 17) - 1


def _fault_class(a: _ArchDef, table: Mapping[int, Pte], va: int, f: _Features) -> str:
    """Not present (P=0), a reserved bit in a present entry, or a protection violation."""
    pte = table.get(va & PAGE_MASK & a.addr_mask)
    if pte is None or not pte.present:
        return "notpresent"
    return "rsvd" if _rsvd_effective(a, pte, f) else "prot"


def _rsvd_effective(a: _ArchDef, pte: Pte, f: _Features) -> bool:
    # i386 has reserved PTE bits only with PAE (which Linux uses when NX is on); the hooked i386
    # CPU therefore honours `rsvd` only with nx. x86_64 always has them (bit 51 > MAXPHYADDR).
    return pte.rsvd and (a.bits == 64 or f.nx)


# -- hooked fidelity ------------------------------------------------------------------------------

_KIND = {UC_MEM_READ_UNMAPPED: "read", UC_MEM_READ_PROT: "read", UC_MEM_WRITE_UNMAPPED: "write",
         UC_MEM_WRITE_PROT: "write", UC_MEM_FETCH_UNMAPPED: "fetch", UC_MEM_FETCH_PROT: "fetch"}
_PERM = {"read": UC_PROT_READ, "write": UC_PROT_WRITE, "fetch": UC_PROT_EXEC}
_NEVER = 1 << 63   # emu_start's `until`: never reached (non-canonical / above 32 bits)
_FILL_PAGE = bytes([_FILL]) * PAGE
_MAX_HOOKED_PAGES = 4096


@functools.lru_cache(maxsize=4096)
def _uc_perms(pte: Pte, user: bool, f: _Features) -> int:
    perms = UC_PROT_NONE
    for kind, bit in _PERM.items():
        if allowed(pte, kind, user, f):
            perms |= bit
    return perms


class _HookedCpu:
    """Flat memory (VA == PA, truncated to 52 bits on x86_64 as QEMU does with paging off) with
    per-page UC_PROT derived from the PTEs by the SDM rules; the error code is derived in Python."""

    fidelity: Fidelity = "hooked"

    def __init__(self, variant: Variant) -> None:
        self.a = a = _ARCH[variant]
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_64 if a.bits == 64 else UC_MODE_32)
        uc.ctl_set_tcg_buffer_size(4 << 20)
        self._pmask = (1 << 52) - 1 if a.bits == 64 else (1 << 32) - 1
        self._perms: dict[int, int] = {}   # va page -> UC perms currently set
        text = _text_page(a.catalogue)
        for page in a.owned():
            self._map(page)
        for page in (a.layout.user_text, a.layout.kernel_text):
            uc.mem_write(page & self._pmask, text)
        p = "R" if a.bits == 64 else "E"
        self._regs = {n: getattr(R, f"UC_X86_REG_{p}{n.upper()}") for n in ("ax", "cx", "di", "si", "bp", "sp")}
        self._rip = R.UC_X86_REG_RIP if a.bits == 64 else R.UC_X86_REG_EIP
        self._rsp = self._regs["sp"]
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_MEM_READ, self._on_read)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self._hit: tuple[int, int, int, int, int] | None = None
        self._intr: int | None = None

    def _map(self, va: int) -> None:
        self.uc.mem_map(va & self._pmask, PAGE, UC_PROT_NONE)
        self.uc.mem_write(va & self._pmask, _FILL_PAGE)
        self._perms[va] = UC_PROT_NONE

    def _protect(self, table: Mapping[int, Pte], user: bool, f: _Features) -> None:
        want: dict[int, int] = {}
        for page, pte in table.items():
            if not pte.present or _rsvd_effective(self.a, pte, f):
                continue   # not present, or reserved bit: every access faults (class from the PTE)
            want[page] = _uc_perms(pte, user, f)
        if len(self._perms) > _MAX_HOOKED_PAGES:   # bound memory over a long campaign
            for page in [p for p in self._perms if p not in want and p not in self.a.owned()]:
                self.uc.mem_unmap(page & self._pmask, PAGE)
                del self._perms[page]
        for page, cur in self._perms.items():
            new = want.get(page, UC_PROT_NONE)
            if new != cur:
                self.uc.mem_protect(page & self._pmask, PAGE, new)
                self._perms[page] = new
        for page, perms in want.items():
            if page not in self._perms:
                self._map(page)
                if perms != UC_PROT_NONE:
                    self.uc.mem_protect(page & self._pmask, PAGE, perms)
                    self._perms[page] = perms

    def _on_invalid(self, uc: Uc, access: int, address: int, size: int, value: int, _: object) -> bool:
        # A cross-page store calls this once per byte; the first call is the fault.
        if self._hit is None:
            self._hit = (access, address, uc.reg_read(self._rip), uc.reg_read(self._rsp),
                         uc.reg_read(R.UC_X86_REG_EFLAGS))
        return False

    def _on_read(self, uc: Uc, access: int, address: int, size: int, value: int, _: object) -> None:
        # Unicorn 2.1.4 checks only the first page of an unaligned load that crosses a page
        # boundary; the second page's permission is checked here. QEMU's MMU reports such a fault
        # at the start of the second page (its split load), so that is the address recorded.
        # This hook runs before Unicorn checks the first page, which must fault first (at the
        # access address) if it is itself unreadable.
        if (address & (PAGE - 1)) + size <= PAGE or self._hit is not None:
            return
        first = self._va(address & PAGE_MASK)
        second = self._va((address & PAGE_MASK) + PAGE)
        if (self._perms.get(first, UC_PROT_NONE) & UC_PROT_READ
                and not self._perms.get(second, UC_PROT_NONE) & UC_PROT_READ):
            self._hit = (UC_MEM_READ_PROT, second & self._pmask, uc.reg_read(self._rip),
                         uc.reg_read(self._rsp), uc.reg_read(R.UC_X86_REG_EFLAGS))
            uc.emu_stop()

    def _va(self, pa: int) -> int:
        """The virtual address of a hook's (physical) address: undo the 52-bit truncation."""
        if self.a.bits == 64 and pa >> 51 & 1:
            pa |= ~self._pmask & self.a.addr_mask
        return pa

    def _on_intr(self, uc: Uc, intno: int, _: object) -> None:
        self._intr = intno
        uc.emu_stop()

    def execute(self, run: CpuRun) -> X86Fault | None:
        a = self.a
        p = _prepare(a, run)
        f = p.features
        self._protect(p.table, p.user, f)
        if p.setup == "fetch":
            target = run.addr & PAGE_MASK
            if target in self._perms:
                self.uc.mem_write(target & self._pmask, _FILL_PAGE)  # int3 at the target
            # Unicorn checks UC_PROT_EXEC when it translates, so a block cached from an earlier run
            # would execute despite changed permissions: drop the target page's blocks.
            self.uc.ctl_remove_cache(target & self._pmask, (target & self._pmask) + PAGE)
        # Unicorn caches permissions in its TLB, even after a refused access: start clean.
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        flags = _USER_EFLAGS | (X86_EFLAGS_AC if not p.user and f.ac else 0)
        self.uc.reg_write_batch([(self._regs[n], v) for n, v in p.regs.items()]
                                + [(R.UC_X86_REG_EFLAGS, flags)])
        self._hit, self._intr = None, None
        try:
            self.uc.emu_start(p.entry, _NEVER)
        except UcError:
            if self._hit is None:
                raise
        if self._hit is None:
            if self._intr != 3:
                raise RuntimeError(f"unexpected exception {self._intr} running {run.insn}")
            return None
        access, address, ip, sp, eflags = self._hit
        address = self._va(address)
        kind = _KIND[access]
        cls = _fault_class(a, p.table, address, f)
        if cls == "prot":
            assert not allowed(p.table[address & PAGE_MASK], kind, p.user, f), "fault on a permitted access"
        return X86Fault(pc=ip, insn=p.spec.encoding if ip == p.entry else b"", user=p.user,
                        error_code=error_code(kind, cls, p.user, f), cr2=address, ip=ip, sp=sp,
                        cs=a.user_cs if p.user else a.kernel_cs, flags=eflags)


# -- mmu fidelity (x86_64) ------------------------------------------------------------------------

# Guest-physical layout. Everything stays below 4 GiB because Unicorn truncates CR3 to 32 bits.
_RAM = 32 << 20
_F_UTEXT, _F_USCRATCH, _F_KTEXT, _F_KSCRATCH, _F_GDT = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
_TABLE_BASE, _TABLE_END = 0x100000, 0x800000
_DATA_BASE, _DATA_END = 0x800000, _RAM
_P, _RW, _US, _A, _D, _XD, _RSVD_BIT = 1, 2, 4, 0x20, 0x40, 1 << 63, 1 << 51
_PROTNONE_BIT = 1 << 8       # Linux's _PAGE_PROTNONE (the global bit with P clear)
_EFER_SCE, _EFER_LME, _EFER_LMA, _EFER_NXE = 1, 1 << 8, 1 << 10, 1 << 11
_CR0 = 0x80010011            # PG | WP | ET | PE
_CR4_PAE, _CR4_SMEP, _CR4_SMAP = 1 << 5, 1 << 20, 1 << 21
_MSR_EFER, _MSR_STAR = 0xC0000080, 0xC0000081
_SYSRETQ = b"\x48\x0f\x07"
_USER_PROLOGUE = b"\x4c\x89\xe1\x41\xff\xe5"   # mov rcx, r12; jmp r13 (sysretq clobbers rcx)
_GDT = (0, 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0x00CFFA000000FFFF, 0x00CFF2000000FFFF,
        0x00AFFA000000FFFF)   # Linux x86_64 order: KERNEL_CS 0x10, KERNEL_DS 0x18, USER32_CS, USER_DS, USER_CS
_PF = 14


class _MmuCpu:
    """Real 4-level paging walked by QEMU's MMU: CR2 from the register, the error code from the
    CPU state (QEMU's env->error_code, found in the context blob by calibration at start-up)."""

    fidelity: Fidelity = "mmu"

    def __init__(self, variant: Variant) -> None:
        if variant != "x86_64":
            raise ValueError(f"mmu fidelity is implemented for x86_64 only, not {variant}")
        self.a = a = _ARCH[variant]
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.ctl_set_cpu_model(R.UC_CPU_X86_BROADWELL)   # the first model with SMAP
        uc.ctl_set_tlb_mode(UC_TLB_CPU)
        uc.ctl_set_tcg_buffer_size(4 << 20)
        uc.mem_map(0, _RAM, UC_PROT_ALL)
        uc.mem_write(_DATA_BASE, bytes([_FILL]) * (_DATA_END - _DATA_BASE))
        text = _text_page(a.catalogue)
        kt = bytearray(text)
        kt[_ENTRY_OFFSET:_ENTRY_OFFSET + len(_SYSRETQ)] = _SYSRETQ
        ut = bytearray(text)
        ut[_ENTRY_OFFSET:_ENTRY_OFFSET + len(_USER_PROLOGUE)] = _USER_PROLOGUE
        uc.mem_write(_F_UTEXT, bytes(ut))
        uc.mem_write(_F_KTEXT, bytes(kt))
        uc.mem_write(_F_USCRATCH, _FILL_PAGE)
        uc.mem_write(_F_KSCRATCH, _FILL_PAGE)
        uc.mem_write(_F_GDT, b"".join(struct.pack("<Q", d) for d in _GDT))
        lay = a.layout
        self._owned_frames = {lay.user_text: _F_UTEXT, lay.user_text + PAGE: _F_USCRATCH,
                              lay.kernel_text: _F_KTEXT, lay.kernel_text + PAGE: _F_KSCRATCH,
                              lay.kernel_text + 2 * PAGE: _F_GDT}
        self._regs = {n: getattr(R, f"UC_X86_REG_R{n.upper()}") for n in ("ax", "cx", "di", "si", "bp", "sp")}
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self._blob = uc.context_save()      # preallocated; context_update() refreshes it in place
        self._err_off: int | None = None
        self._calib: list[bytes] | None = None
        self._hit: tuple[int, int, int, int, int, int] | None = None
        self._intr: int | None = None
        self._clean: dict[tuple[bool, bool, bool], object] = {}
        # The clean CPU: CPL0 in long mode with Linux's GDT; per feature set, CR4/EFER differ.
        self._build_tables({})   # a valid CR3 before paging is switched on
        uc.reg_write(R.UC_X86_REG_CR3, _TABLE_BASE)
        uc.reg_write(R.UC_X86_REG_CR4, _CR4_PAE)
        uc.msr_write(_MSR_EFER, _EFER_SCE | _EFER_LME | _EFER_LMA | _EFER_NXE)
        uc.reg_write(R.UC_X86_REG_CR0, _CR0)
        uc.reg_write(R.UC_X86_REG_GDTR, (0, lay.kernel_text + 2 * PAGE, 8 * len(_GDT) - 1, 0))
        uc.msr_write(_MSR_STAR, (X86_64_USER32_CS << 48) | (X86_64_KERNEL_CS << 32))
        uc.reg_write(R.UC_X86_REG_CS, X86_64_KERNEL_CS)
        uc.reg_write(R.UC_X86_REG_SS, X86_64_KERNEL_DS)
        self._base = uc.context_save()
        self._calibrate()

    # page tables ---------------------------------------------------------------------------------

    def _build_tables(self, table: Mapping[int, Pte], nx: bool = True) -> dict[int, int]:
        """Write PML4/PDPT/PD/PT for `table` into the table pool (one mem_write); the upper levels
        grant P|RW|US so only the last level decides. Returns page -> data frame."""
        buf = bytearray(PAGE)          # PML4 is the first frame of the pool
        dirs: dict[tuple[int, ...], int] = {(): 0}
        frames: dict[int, int] = {}
        next_data = _DATA_BASE
        for va, pte in table.items():
            off = dirs[()]
            path: tuple[int, ...] = ()
            for shift in (39, 30, 21):
                path = path + ((va >> shift) & 511,)
                nxt = dirs.get(path)
                if nxt is None:
                    nxt = len(buf)
                    if _TABLE_BASE + nxt + PAGE > _TABLE_END:
                        raise UnsupportedRun("too many page-table pages for the table pool")
                    buf += bytes(PAGE)
                    dirs[path] = nxt
                    struct.pack_into("<Q", buf, off + 8 * path[-1], (_TABLE_BASE + nxt) | _P | _RW | _US)
                off = nxt
            if pte.present:
                frame = self._owned_frames.get(va)
                if frame is None:
                    if next_data >= _DATA_END:
                        raise UnsupportedRun("too many present pages for the data pool")
                    frame, next_data = next_data, next_data + PAGE
                frames[va] = frame
                e = frame | _P
                e |= _RW if pte.write else 0
                e |= _US if pte.user else 0
                e |= _A if pte.young else 0
                e |= _D if pte.dirty else 0
                e |= _XD if nx and not pte.exec else 0   # without EFER.NXE bit 63 is reserved
                e |= _RSVD_BIT if pte.rsvd else 0
            elif pte.state == "protnone":
                e = _PROTNONE_BIT | (_RW if pte.write else 0) | (_US if pte.user else 0)
            else:
                e = (va >> 12 & 0xFFFF) << 9 | 0x40  # a swap/hwpoison-like entry: P clear, not zero
            struct.pack_into("<Q", buf, off + 8 * ((va >> 12) & 511), e)
        self.uc.mem_write(_TABLE_BASE, bytes(buf))
        return frames

    def _clean_ctx(self, f: _Features) -> object:
        key = (f.nx, f.smep, f.smap)
        ctx = self._clean.get(key)
        if ctx is None:
            uc = self.uc
            uc.context_restore(self._base)
            uc.msr_write(_MSR_EFER, _EFER_SCE | _EFER_LME | _EFER_LMA | (_EFER_NXE if f.nx else 0))
            uc.reg_write(R.UC_X86_REG_CR4, _CR4_PAE | (_CR4_SMEP if f.smep else 0) | (_CR4_SMAP if f.smap else 0))
            ctx = self._clean[key] = uc.context_save()
        return ctx

    # exceptions ----------------------------------------------------------------------------------

    def _on_intr(self, uc: Uc, intno: int, _: object) -> None:
        self._intr = intno
        if intno == _PF:
            uc.context_update(self._blob)
            if self._calib is not None:
                self._calib.append(bytes(self._blob))
                err = 0
            else:
                err = ctypes.c_int32.from_address(self._blob.context.value + self._err_off).value
            self._hit = (err, uc.reg_read(R.UC_X86_REG_CR2), uc.reg_read(R.UC_X86_REG_RIP),
                         uc.reg_read(R.UC_X86_REG_RSP), uc.reg_read(R.UC_X86_REG_CS),
                         uc.reg_read(R.UC_X86_REG_EFLAGS))
        uc.emu_stop()   # otherwise the faulting instruction is retried forever

    def _calibrate(self) -> None:
        """Find env->error_code in the context blob: the one int32 offset that holds the SDM error
        code in several faults with different codes (build-dependent, so never hard-coded)."""
        lay = self.a.layout
        data = 0x600000
        cases = [  # (insn, mode, addr, ptes, features, expected error code per SDM §4.7)
            ("load32", "kernel", data, {}, {}, 0x0),
            ("store32", "user", data, {}, {}, PF_USER | PF_WRITE),
            ("store32", "user", data, {data: Pte()}, {}, PF_USER | PF_WRITE | PF_PROT),
            ("jmp_reg", "user", data, {data: Pte(write=True)}, {"nx": True}, PF_USER | PF_PROT | PF_INSTR),
            ("load32", "user", data, {data: Pte(rsvd=True)}, {}, PF_USER | PF_PROT | PF_RSVD),
        ]
        found: set[int] | None = None
        for insn, mode, addr, ptes, feats, want in cases:
            self._calib = []
            self.execute(CpuRun(insn, mode, addr, lay.user_top, ptes, feats))
            if len(self._calib) != 1:
                raise RuntimeError(f"calibration run {insn}/{mode} did not raise one #PF")
            blob = self._calib[0]
            offs = {o for o in range(0, len(blob) - 3, 4) if struct.unpack_from("<i", blob, o)[0] == want}
            found = offs if found is None else found & offs
        self._calib = None
        if not found or len(found) != 1:
            raise RuntimeError(f"cannot locate the #PF error code in the Unicorn context: {found}")
        self._err_off = found.pop()

    # one run -------------------------------------------------------------------------------------

    def execute(self, run: CpuRun) -> X86Fault | None:
        a, uc = self.a, self.uc
        p = _prepare(a, run)
        f = p.features
        frames = self._build_tables(p.table, nx=f.nx)
        if p.setup == "fetch":
            frame = frames.get(run.addr & PAGE_MASK)
            if frame is not None and frame >= _DATA_BASE:
                uc.mem_write(frame, _FILL_PAGE)        # int3 at the target: a good fetch stops there
        uc.context_restore(self._clean_ctx(f))      # also resets env->old_exception (no #DF)
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        r = self._regs
        regs = [(r[n], v) for n, v in p.regs.items()]
        if p.user:
            # Enter CPL3 the way Linux returns to user space: sysretq from the kernel stub, which
            # lands on the user prologue that restores rcx and jumps to the instruction.
            regs = [(x, v) for x, v in regs if x != r["cx"]]
            regs += [(R.UC_X86_REG_RCX, a.layout.user_text + _ENTRY_OFFSET), (R.UC_X86_REG_R11, _USER_EFLAGS),
                     (R.UC_X86_REG_R12, p.regs["cx"]), (R.UC_X86_REG_R13, p.entry)]
            start = a.layout.kernel_text + _ENTRY_OFFSET
        else:
            regs.append((R.UC_X86_REG_EFLAGS, _USER_EFLAGS | (X86_EFLAGS_AC if f.ac else 0)))
            start = p.entry
        uc.reg_write_batch(regs)
        self._hit, self._intr = None, None
        uc.emu_start(start, _NEVER)
        if self._intr != _PF:
            if self._intr != 3:
                raise RuntimeError(f"unexpected exception {self._intr} running {run.insn}")
            return None
        assert self._hit is not None
        err, cr2, ip, sp, cs, eflags = self._hit
        user = bool(cs & 3)
        return X86Fault(pc=ip, insn=p.spec.encoding if ip == p.entry else b"", user=user,
                        error_code=err & 0xFFFF, cr2=cr2, ip=ip, sp=sp, cs=cs, flags=eflags)


# -- the public CPU -------------------------------------------------------------------------------

class X86Cpu:
    """harness.arch.Cpu for x86: X86Cpu("x86_64", "mmu"|"hooked") or X86Cpu("i386", "hooked").
    One long-lived Unicorn instance; every execute() starts from a clean CPU state."""

    def __init__(self, variant: Variant, fidelity: Fidelity = "hooked") -> None:
        if variant not in _ARCH:
            raise ValueError(f"unknown x86 variant {variant!r}")
        if fidelity == "mmu":
            self._cpu: _HookedCpu | _MmuCpu = _MmuCpu(variant)
        elif fidelity == "hooked":
            self._cpu = _HookedCpu(variant)
        else:
            raise ValueError(f"unknown fidelity {fidelity!r}")
        self.variant = variant
        self.fidelity: Fidelity = fidelity

    def execute(self, run: CpuRun) -> X86Fault | None:
        """Run the instruction; the #PF the emulated CPU raised, or None if it completed."""
        return self._cpu.execute(run)


def make_cpu(variant: Variant, fidelity: Fidelity) -> X86Cpu:
    return X86Cpu(variant, fidelity)
