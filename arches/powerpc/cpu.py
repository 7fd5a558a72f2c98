"""powerpc (Book3S, big-endian) on Unicorn 2.1.4: the instruction catalogue, the hooked-mode CPU and the
NativeFault a Book3S hash-MMU CPU hands the kernel (DSISR/DAR for a data storage interrupt 0x300,
SRR0/SRR1 for an instruction storage interrupt 0x400).

Both arches are big-endian, the classic v4.0 configuration (ppc64 = a Book3S-64 POWER server kernel,
ppc32 = a Book3S-32 6xx/7xx kernel).

Fidelity: hooked only. Unicorn never delivers the interrupt and never writes SRR0/SRR1/DSISR/DAR in
flat mode, and ppc64 MMU mode was not feasible (an explicit CPU model gives a 32-bit CPU; the default
POWER10 forces MSR[IR|DR] when MSR[PR] is set and then takes segment interrupts with an empty SLB), so
the native registers are derived here from what Unicorn did (the access kind and whether the page was
unmapped or mapped without the needed permission), following Power ISA v2.07 Book III-S:

  DSI (6.5.3): DSISR bit 33 (0x40000000) "no translation found" for a not-present page,
  bit 36 (0x08000000) "storage protection" for a present page that forbids the access, bit 38
  (0x02000000) set for a store (st*, stmw, stwcx., dcbz); DAR = the EA of a byte accessed in the page
  that faulted. SRR1 = the MSR with bits 33:36 and 42:47 cleared (none of them are set in a Linux MSR).
  ISI (6.5.4): SRR0 = the fetch address; SRR1 bit 33 (0x40000000) "no translation", bit 35
  (0x10000000) "no-execute or guarded" (an HPTE with N=1: a present, readable page without exec
  permission), bit 36 (0x08000000) "storage protection" (the page is not accessible at all in this
  state), the rest of SRR1 copied from the MSR.

The MSR values are Linux's own (arch/powerpc/include/asm/reg.h v4.0): ppc64 MSR_KERNEL =
SF|ISF|HV|ME|RI|IR|DR, MSR_USER64 = MSR_KERNEL|PR|EE; ppc32 MSR_KERNEL = ME|RI|IR|DR, MSR_USER = that
|PR|EE.

Unicorn facts this relies on (reference/unicorn-2.1.4-fault-capture.md §2, §4, plus probes):
  * ppc64 fetches only with MSR[HV]=1, which reg_write cannot set: MSR is patched in the context blob
    (its offset calibrated at start-up), restored, then written again to recompute hflags.
  * The default POWER10 forces MSR[IR|DR] whenever MSR[PR]=1, so ppc64 runs every instruction with
    PR=0 in real mode; the user/supervisor distinction is applied by the per-page permissions, and the
    reported MSR/SRR1 carry PR=1 for a user-mode fault. ppc32 (7457 default model, real mode) runs
    with its architectural MSR, PR included.
  * Real mode ignores EA bits 0:3 on ppc64, and memory hooks receive physical addresses; DAR keeps the
    EA's top nibble from the base register the CPU used. A data page that would alias the text page
    in real mode is refused (ScenarioError): the flat model cannot give it a distinct translation.
  * stwcx. without a reservation performs no access at all in Unicorn (and the ISA lets an
    implementation skip the DSI then), so the catalogue only has it after an lwarx.
  * Code rewritten at the same address needs an explicit TB flush (ctl_remove_cache) on ppc64.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Mapping

from unicorn import (UC_ARCH_PPC, UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH, UC_HOOK_CODE, UC_HOOK_INTR, UC_HOOK_MEM_INVALID,
                     UC_MEM_FETCH_PROT, UC_MEM_FETCH_UNMAPPED, UC_MEM_READ_PROT,
                     UC_MEM_READ_UNMAPPED, UC_MEM_WRITE_PROT, UC_MEM_WRITE_UNMAPPED,
                     UC_MODE_BIG_ENDIAN, UC_MODE_PPC32, UC_MODE_PPC64, UC_PROT_EXEC, UC_PROT_NONE,
                     UC_PROT_READ, UC_PROT_WRITE, Uc, UcError)
from unicorn import ppc_const as P

from harness.arch import CpuRun, Fidelity, Instruction, Layout, NativeFault
from harness.kernel.constants import PAGE_MASK, PAGE_SIZE
from harness.kernel.mm import Pte
from harness.scenario import ScenarioError

PPC_ALIGNMENT_INTERRUPT = 5  # QEMU's POWERPC_EXCP_ALIGN, as Unicorn reports it to UC_HOOK_INTR

# arch/powerpc/include/asm/reg.h v4.0
MSR_SF = 1 << 63
MSR_ISF = 1 << 61
MSR_HV = 1 << 60
MSR_EE = 1 << 15
MSR_PR = 1 << 14
MSR_ME = 1 << 12
MSR_IR = 1 << 5
MSR_DR = 1 << 4
MSR_RI = 1 << 1

MSR_KERNEL64 = MSR_SF | MSR_ISF | MSR_HV | MSR_ME | MSR_RI | MSR_IR | MSR_DR
MSR_USER64 = MSR_KERNEL64 | MSR_PR | MSR_EE
MSR_KERNEL32 = MSR_ME | MSR_RI | MSR_IR | MSR_DR
MSR_USER32 = MSR_KERNEL32 | MSR_PR | MSR_EE

DSISR_NOHPTE = 0x40000000
DSISR_PROTFAULT = 0x08000000
DSISR_ISSTORE = 0x02000000
DSISR_DABRMATCH = 0x00400000
DSISR_KEYFAULT = 0x00200000
SRR1_ISI_NOPT = 0x40000000
SRR1_ISI_N_OR_G = 0x10000000
SRR1_ISI_PROT = 0x08000000
# SRR1 bits 33:36 and 42:47 (interrupt-specific); the rest come from the MSR.
SRR1_CAUSE_MASK = 0x78000000 | 0x003F0000

TRAP_DSI = 0x300
TRAP_ISI = 0x400

LAYOUT_PPC64 = Layout(task_size=0x0000400000000000,      # TASK_SIZE_USER64
                      user_text=0x10000000,
                      kernel_text=0xC000000000008000,
                      user_top=0x00003FFFFFFF0000)
LAYOUT_PPC32 = Layout(task_size=0xC0000000,              # CONFIG_TASK_SIZE default
                      user_text=0x10000000,
                      kernel_text=0xC0008000,
                      user_top=0xBFFF0000)

REAL_MODE_MASK64 = 0x0FFFFFFFFFFFFFFF  # ppc64 real mode ignores EA bits 0:3
BIG_DISP = 32768                        # |D| of the update forms: stwu rS,-32768(rA)


def _d(op: int, rt: int, ra: int, d: int) -> int:
    return (op << 26) | (rt << 21) | (ra << 16) | (d & 0xFFFF)


def _ds(op: int, rt: int, ra: int, d: int, xo: int) -> int:
    return (op << 26) | (rt << 21) | (ra << 16) | (d & 0xFFFC) | xo


def _x(rt: int, ra: int, rb: int, xo: int, rc: int = 0) -> int:
    return (31 << 26) | (rt << 21) | (ra << 16) | (rb << 11) | (xo << 1) | rc


def _w(*words: int) -> bytes:
    return b"".join(struct.pack(">I", w) for w in words)


MTCTR_R3 = (31 << 26) | (3 << 21) | (9 << 16) | (467 << 1)   # mtspr 9,r3
BCTR = 0x4E800420


@dataclass(frozen=True)
class PpcInsn(Instruction):
    """A catalogue entry. `prefix` runs first (lwarx before stwcx., mtctr before bctr); `base`
    says how the CPU points the addressing registers at the scenario's addr: "r3" (r3 = addr),
    "r3-upd" (r3 = addr + 32768 for a -32768 displacement), "r1-upd" (r1 = addr + 32768),
    "r3-x" (r3 = addr, r5 = 0), "r1-x" (r1 = sp, r5 = addr - sp), "ctr" (CTR = addr)."""

    prefix: bytes = b""
    base: str = "r3"
    words64_only: bool = False


def _catalogue(bits: int) -> dict[str, PpcInsn]:
    both = ("user", "kernel")
    user = ("user",)
    entries = [
        PpcInsn("lbz", _w(_d(34, 4, 3, 0)), "read", "lbz r4,0(r3): load byte", both, 1),
        PpcInsn("lhz", _w(_d(40, 4, 3, 0)), "read", "lhz r4,0(r3): load halfword", both, 2),
        PpcInsn("lwz", _w(_d(32, 4, 3, 0)), "read", "lwz r4,0(r3): load word", both, 4),
        PpcInsn("ld", _w(_ds(58, 4, 3, 0, 0)), "read", "ld r4,0(r3): load doubleword", both, 8,
                words64_only=True),
        PpcInsn("stb", _w(_d(38, 4, 3, 0)), "write", "stb r4,0(r3): store byte", both, 1),
        PpcInsn("sth", _w(_d(44, 4, 3, 0)), "write", "sth r4,0(r3): store halfword", both, 2),
        PpcInsn("stw", _w(_d(36, 4, 3, 0)), "write", "stw r4,0(r3): store word", both, 4),
        PpcInsn("std", _w(_ds(62, 4, 3, 0, 0)), "write", "std r4,0(r3): store doubleword", both, 8,
                words64_only=True),
        PpcInsn("stwu", _w(_d(37, 4, 3, -BIG_DISP)), "write",
                "stwu r4,-32768(r3): store word with update, base not r1", both, 4, base="r3-upd"),
        PpcInsn("stwu_r1", _w(_d(37, 1, 1, -BIG_DISP)), "write",
                "stwu r1,-32768(r1): push a 32 KiB frame (r1 = addr+32768; sp unused)", user, 4,
                base="r1-upd"),
        PpcInsn("stdu", _w(_ds(62, 4, 3, -BIG_DISP, 1)), "write",
                "stdu r4,-32768(r3): store doubleword with update, base not r1", both, 8,
                base="r3-upd", words64_only=True),
        PpcInsn("stdu_r1", _w(_ds(62, 1, 1, -BIG_DISP, 1)), "write",
                "stdu r1,-32768(r1): push a 32 KiB frame (r1 = addr+32768; sp unused)", user, 8,
                base="r1-upd", words64_only=True),
        PpcInsn("stwux", _w(_x(4, 3, 5, 183)), "write", "stwux r4,r3,r5: indexed store with update, base not r1",
                both, 4, base="r3-x"),
        PpcInsn("stwux_r1", _w(_x(1, 1, 5, 183)), "write",
                "stwux r1,r1,r5: alloca-style frame push (r1 = sp, r5 = addr - sp)", user, 4, base="r1-x"),
        PpcInsn("stdux", _w(_x(4, 3, 5, 181)), "write", "stdux r4,r3,r5: indexed store with update, base not r1",
                both, 8, base="r3-x", words64_only=True),
        PpcInsn("stdux_r1", _w(_x(1, 1, 5, 181)), "write",
                "stdux r1,r1,r5: alloca-style frame push (r1 = sp, r5 = addr - sp)", user, 8, base="r1-x",
                words64_only=True),
        PpcInsn("lmw", _w(_d(46, 28, 3, 0)), "read", "lmw r28,0(r3): load r28-r31 (16 bytes)", both, 16),
        PpcInsn("stmw", _w(_d(47, 28, 3, 0)), "write", "stmw r28,0(r3): store r28-r31 (16 bytes)", both, 16),
        PpcInsn("dcbz", _w(_x(0, 0, 3, 1014)), "write",
                "dcbz 0,r3: zero the cache block holding addr", both, 128 if bits == 64 else 32),
        PpcInsn("lwarx", _w(_x(4, 0, 3, 20)), "read", "lwarx r4,0,r3: load and reserve", both, 4),
        PpcInsn("lwarx_stwcx", _w(_x(4, 0, 3, 150, 1)), "rmw",
                "lwarx r4,0,r3; stwcx. r4,0,r3: atomic word update (the fault may be either)", both, 4,
                prefix=_w(_x(4, 0, 3, 20))),
        PpcInsn("bctr", _w(BCTR), "fetch", "mtctr r3; bctr: branch to addr (instruction fetch)", both, 4,
                prefix=_w(MTCTR_R3), base="ctr"),
    ]
    return {e.name: e for e in entries if bits == 64 or not e.words64_only}


CATALOGUE_PPC64 = _catalogue(64)
CATALOGUE_PPC32 = _catalogue(32)


@dataclass(frozen=True)
class PpcFault(NativeFault):
    """What a Book3S CPU hands the kernel, by the manual's names.

    trap 0x300 (DSI): dar = EA, dsisr as in the module docstring, nip = the faulting instruction.
    trap 0x400 (ISI): nip = SRR0 = the fetch address (also in dar, as the 64-bit entry code stores
    it in regs->dar), dsisr = 0, srr1 carries the cause bits. gpr1 = r1 at the fault (in kernel mode
    it stands for current->thread.regs->gpr[1], the user r1 the stack rule reads).
    """

    trap: int = TRAP_DSI
    dsisr: int = 0
    dar: int = 0
    srr1: int = 0
    nip: int = 0
    gpr1: int = 0
    msr: int = 0


_UNMAPPED = {UC_MEM_READ_UNMAPPED: "read", UC_MEM_WRITE_UNMAPPED: "write", UC_MEM_FETCH_UNMAPPED: "fetch"}
_PROT = {UC_MEM_READ_PROT: "read", UC_MEM_WRITE_PROT: "write", UC_MEM_FETCH_PROT: "fetch"}


def page_perms(bits: int, pte: Pte | None, user: bool) -> int | None:
    """The Unicorn permissions of a user-space page: None = no translation (not mapped)."""
    if pte is None or pte.state != "present":
        # pte_none, swap and hwpoison entries have no _PAGE_PRESENT; PROT_NONE (PAGE_NONE has no
        # _PAGE_USER) is refused by hash_page() before an HPTE exists: all give "no translation".
        return None
    if user and not pte.user:
        return UC_PROT_NONE
    perms = UC_PROT_READ
    if pte.write:
        perms |= UC_PROT_WRITE
    # Book3S-64 HPTEs carry N (no-execute) from _PAGE_EXEC; the 6xx hash MMU has no per-page
    # execute control, so on ppc32 every readable page is executable.
    if pte.exec or bits == 32:
        perms |= UC_PROT_EXEC
    return perms


class PpcCpu:
    """One long-lived Unicorn per instance; a clean context is restored for every run."""

    fidelity: Fidelity = "hooked"

    def __init__(self, bits: int, fidelity: Fidelity = "hooked") -> None:
        if fidelity != "hooked":
            raise ValueError(f"ppc{bits}: only the hooked fidelity exists")
        self.bits = bits
        self.mask = (1 << bits) - 1
        self.layout = LAYOUT_PPC64 if bits == 64 else LAYOUT_PPC32
        self.catalogue = CATALOGUE_PPC64 if bits == 64 else CATALOGUE_PPC32
        self.uc = Uc(UC_ARCH_PPC, (UC_MODE_PPC64 if bits == 64 else UC_MODE_PPC32) | UC_MODE_BIG_ENDIAN)
        self.mapped: dict[int, int] = {}   # physical page -> perms currently mapped
        self.code_at: dict[int, bytes] = {}
        self.events: list[tuple[int, int, int, int]] = []
        self.fetch_target: int | None = None
        self.reached_target = False
        self.uc.hook_add(UC_HOOK_MEM_INVALID, self._on_invalid)
        self.uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self.uc.hook_add(UC_HOOK_CODE, self._on_code)
        self.intr: int | None = None
        if bits == 64:
            self._set_msr64(MSR_SF | MSR_HV | MSR_ME | MSR_RI)
        else:
            self.uc.reg_write(P.UC_PPC_REG_MSR, MSR_ME | MSR_RI)
        self.clean = self.uc.context_save()

    # -- set-up ----------------------------------------------------------------------------------
    def _set_msr64(self, value: int) -> None:
        """The MSR[HV] workaround: find env->msr in the context blob, patch it, restore."""
        uc = self.uc
        uc.reg_write(P.UC_PPC_REG_MSR, MSR_SF | MSR_ME)
        a = bytes(uc.context_save())
        want_a = struct.pack("<Q", uc.reg_read(P.UC_PPC_REG_MSR))
        uc.reg_write(P.UC_PPC_REG_MSR, MSR_SF)
        ctx = uc.context_save()
        b = bytes(ctx)
        want_b = struct.pack("<Q", uc.reg_read(P.UC_PPC_REG_MSR))
        offset = next(i for i in range(0, len(b) - 7, 8) if a[i:i + 8] == want_a and b[i:i + 8] == want_b)
        ctypes.memmove(ctypes.cast(ctx.context, ctypes.c_void_p).value + offset, struct.pack("<Q", value), 8)
        uc.context_restore(ctx)
        uc.reg_write(P.UC_PPC_REG_MSR, value)
        if uc.reg_read(P.UC_PPC_REG_MSR) != value:
            raise RuntimeError("ppc64: the MSR[HV] context-blob workaround did not take")

    def phys(self, va: int) -> int:
        return va & REAL_MODE_MASK64 if self.bits == 64 else va & self.mask

    # -- hooks -----------------------------------------------------------------------------------
    def _on_invalid(self, uc, access, address, size, value, data) -> bool:
        self.events.append((access, address, size, uc.reg_read(P.UC_PPC_REG_PC)))
        return False

    def _on_intr(self, uc, intno, data) -> None:
        self.intr = intno
        uc.emu_stop()

    def _on_code(self, uc, address, size, data) -> None:
        if self.fetch_target is not None and address == self.fetch_target:
            self.reached_target = True
            uc.emu_stop()

    # -- one run ---------------------------------------------------------------------------------
    def _code_start(self, user: bool) -> int:
        # The catalogue instruction sits at the text address itself (the exception-table entry is
        # for it); its prefix, if any, runs from the 8 bytes before it. In user mode the text page
        # starts at user_text, so the instruction is at user_text + 8 there.
        return self.layout.user_text if user else self.layout.kernel_text - 8

    def execute(self, run: CpuRun) -> PpcFault | None:
        insn = self.catalogue[run.insn]
        user = run.mode == "user"
        start = self._code_start(user)
        main = start + 8
        code = b"\x60\x00\x00\x00" * ((8 - len(insn.prefix)) // 4) + insn.prefix + insn.encoding

        addr = run.addr & self.mask
        sp = run.sp & self.mask
        regs = {3: addr, 1: sp, 5: 0, 4: 0x01020304}
        if insn.base == "r3-upd":
            regs[3] = (addr + BIG_DISP) & self.mask
        elif insn.base == "r1-upd":
            regs[1] = (addr + BIG_DISP) & self.mask
        elif insn.base == "r1-x":
            regs[5] = (addr - sp) & self.mask
        for r in (28, 29, 30, 31):
            regs[r] = r

        # Which pages this run can touch: the text page(s) and the data or fetch-target pages.
        wanted: dict[int, tuple[int, int]] = {}  # phys page -> (va page, perms)
        denied: set[int] = set()                  # phys pages present but with no access at all
        text_pages = [start & PAGE_MASK & self.mask, main & PAGE_MASK & self.mask]
        for va in text_pages:
            wanted[self.phys(va)] = (va, UC_PROT_READ | UC_PROT_EXEC)
        span = insn.width
        lo = addr & ~(span - 1) if insn.name == "dcbz" else addr
        for va in sorted({lo & PAGE_MASK & self.mask, (lo + span - 1) & PAGE_MASK & self.mask}):
            if any(va == t for t in text_pages):
                continue
            perms = self._perms(va, run.ptes, user)
            pa = self.phys(va)
            if pa in wanted:
                raise ScenarioError(f"{run.insn} at {va:#x}: aliases the text page in ppc64 real mode")
            if perms == UC_PROT_NONE:
                # Unicorn's helper-based accesses (lmw/stmw) skip the read-permission check of a
                # mapped no-access page; such a page stays unmapped and its faults are classed as
                # protection faults here.
                denied.add(pa)
            elif perms is not None:
                wanted[pa] = (va, perms)
        self._map(wanted)
        self._write_code(start, code)

        uc = self.uc
        uc.context_restore(self.clean)
        # A faulted access can leave a TLB entry behind that lets the same access through next
        # time (seen after READ_PROT): every run starts with an empty TLB.
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        for r, v in regs.items():
            uc.reg_write(getattr(P, f"UC_PPC_REG_{r}"), v)
        self.events.clear()
        self.intr = None
        self.reached_target = False
        self.fetch_target = addr & ~3 if insn.access == "fetch" else None
        try:
            uc.emu_start(start, main + 4)
        except UcError:
            pass
        if self.events:
            return self._fault(insn, user, main, addr, regs, wanted, denied)
        if insn.access == "fetch" and not self.reached_target and self.intr is None:
            raise RuntimeError(f"{run.insn}: the fetch neither completed nor faulted")
        if self.intr == PPC_ALIGNMENT_INTERRUPT:
            # lwarx/stwcx./lmw/dcbz on a misaligned address: an alignment interrupt (0x600),
            # handled by alignment_exception(), not by do_page_fault().
            raise ScenarioError(f"{run.insn} at {addr:#x}: alignment interrupt, not a page fault")
        if self.intr is not None and not (insn.access == "fetch" and self.reached_target):
            raise RuntimeError(f"{run.insn}: unexpected interrupt {self.intr}")
        return None

    def _perms(self, va: int, ptes: Mapping[int, Pte], user: bool) -> int | None:
        if va >= self.layout.task_size:
            # init_mm maps nothing a catalogue access can reach, except the kernel text page.
            if not user and va == self.layout.kernel_text & PAGE_MASK:
                return UC_PROT_READ | UC_PROT_EXEC
            return None
        return page_perms(self.bits, ptes.get(va), user)

    def _map(self, wanted: dict[int, tuple[int, int]]) -> None:
        uc = self.uc
        for pa in [p for p in self.mapped if p not in wanted]:
            uc.mem_unmap(pa, PAGE_SIZE)
            del self.mapped[pa]
            self.code_at.clear()
        for pa, (_, perms) in wanted.items():
            if pa not in self.mapped:
                uc.mem_map(pa, PAGE_SIZE, perms)
                self.code_at.clear()
            elif self.mapped[pa] != perms:
                uc.mem_protect(pa, PAGE_SIZE, perms)
            self.mapped[pa] = perms

    def _write_code(self, start: int, code: bytes) -> None:
        pa = self.phys(start)
        if self.code_at.get(pa) != code:
            self.uc.mem_write(pa, code)
            self.uc.ctl_remove_cache(pa, pa + len(code))
            self.code_at[pa] = code

    def _fault(self, insn: PpcInsn, user: bool, main: int, addr: int, regs: dict[int, int],
               wanted: dict[int, tuple[int, int]], denied: set[int]) -> PpcFault:
        access, paddr, size, pc = self.events[0]
        msr = (MSR_USER64 if user else MSR_KERNEL64) if self.bits == 64 else (MSR_USER32 if user else MSR_KERNEL32)
        gpr1 = regs[1]
        if self.bits == 64:
            ea = (addr & ~REAL_MODE_MASK64) | paddr
        else:
            ea = paddr
        kind = {**_PROT, **_UNMAPPED}[access]
        protection = access in _PROT or (paddr & PAGE_MASK) in denied
        if kind == "fetch":
            srr1 = (msr & ~SRR1_CAUSE_MASK & self.mask)
            if not protection:
                srr1 |= SRR1_ISI_NOPT
            else:
                va = ea & PAGE_MASK
                perms = wanted.get(self.phys(va) & PAGE_MASK, (va, UC_PROT_NONE))[1]
                srr1 |= SRR1_ISI_N_OR_G if perms & UC_PROT_READ else SRR1_ISI_PROT
            return PpcFault(pc=ea, insn=b"", user=user, trap=TRAP_ISI, dsisr=0, dar=ea, srr1=srr1,
                            nip=ea, gpr1=gpr1, msr=msr)
        dsisr = DSISR_PROTFAULT if protection else DSISR_NOHPTE
        if kind == "write":
            dsisr |= DSISR_ISSTORE
        srr1 = msr & ~SRR1_CAUSE_MASK & self.mask
        # The hook's PC is the instruction that made the access (the lwarx or the stwcx.).
        pc &= self.mask
        word = insn.encoding if pc == main else insn.prefix[-4:]
        return PpcFault(pc=pc, insn=word, user=user, trap=TRAP_DSI, dsisr=dsisr, dar=ea,
                        srr1=srr1, nip=pc, gpr1=gpr1, msr=msr)


__all__ = ["PpcCpu", "PpcFault", "PpcInsn", "CATALOGUE_PPC64", "CATALOGUE_PPC32", "LAYOUT_PPC64",
           "LAYOUT_PPC32"]
