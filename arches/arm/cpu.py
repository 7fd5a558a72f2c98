"""32-bit ARM (ARMv7-A, short-descriptor translation, LPAE off) on Unicorn: the instruction
catalogue, the hardware view of Linux's page tables, and the NativeFault (DFSR/IFSR, DFAR/IFAR).

Fidelity `hooked`: flat Unicorn memory mapped at 4 KiB granularity (Unicorn's ARM target page is
1 KiB; every mapping here is a whole 4 KiB Linux page), permissions per page for the CPU's current
mode. The hardware entry for each Linux pte is what arch/arm/mm/proc-v7-2level.S v4.0
cpu_v7_set_pte_ext() writes:
  * the hardware entry is 0 (a level-2 translation fault) unless the pte is valid and young and
    not PROT_NONE (L_PTE_NONE) -- so swap, hwpoison, PROT_NONE/protnone and old ptes all fault
    as "page translation" (FS 7);
  * AP0 is always set; AP1 = L_PTE_USER; APX = L_PTE_RDONLY or !L_PTE_DIRTY, so a clean
    writable page is read-only to both privilege levels (software dirty tracking);
  * XN = L_PTE_XN.
A level-1 entry (a page table) exists for a 2 MiB Linux pmd (two 1 MiB hardware sections) once
any pte in it was ever set; without one the walk stops at level 1: "section translation" (FS 5).
User page tables are in DOMAIN_USER (1), kernel sections in DOMAIN_KERNEL (0)
(asm/domain.h v4.0, !CONFIG_CPU_USE_DOMAINS). Above TASK_SIZE, init_mm maps (here) exactly one
1 MiB kernel section at PAGE_OFFSET, kernel-only RWX (AP=01): a user access there is a section
permission fault (FS 13); and the high vectors page 0xffff0000 (MT_HIGH_VECTORS: user read/exec,
read-only, a small page in DOMAIN_USER: a write is FS 15). Anything else above TASK_SIZE is
unmapped (FS 5). Instructions that need alignment (LDREX/STREX/LDRD/LDM/SWP/halfwords) get their
address register aligned down, so no alignment fault (FS 1, do_alignment) is ever raised.
For fetch entries the branch runs and the CPU stops at the target once it was fetched.

The fault status follows the ARMv7 ARM (B4.1.52 DFSR, B4.1.96 IFSR, B3.13.3 the FS encodings):
  DFSR = WnR(11) | FS[4](10) | Domain(7:4) | FS[3:0]; DFAR = the faulting address.
  IFSR = FS[4](10) | FS[3:0]; IFAR = the faulting fetch address.
The Domain field is reported for faults that read a level-1 descriptor (level-2 translation,
section and page permission faults); 0 for a level-1 translation fault.

CPU feature `abort_ev4`: the core is an ARMv4 with early aborts (arch/arm/mm/abort-ev4.S with
pabort-legacy.S). Such a core has no WnR bit (bit 11 of its FSR reads as 0) and no IFSR/IFAR: the
kernel's abort model synthesises the write bit by decoding the aborted instruction and forces a
prefetch abort to FS 5 at the aborted pc (see legacy.cpu_abort_model). Unicorn still executes
the instruction as ARMv7 does; only what the CPU reports changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from unicorn import (UC_ARCH_ARM, UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH, UC_HOOK_CODE, UC_HOOK_MEM_INVALID, UC_MEM_FETCH_PROT, UC_MEM_FETCH_UNMAPPED,
                     UC_MEM_READ_PROT, UC_MEM_READ_UNMAPPED, UC_MEM_WRITE_PROT,
                     UC_MEM_WRITE_UNMAPPED, UC_MODE_ARM, UC_PROT_EXEC, UC_PROT_NONE, UC_PROT_READ,
                     UC_PROT_WRITE, Uc, UcError)
from unicorn.arm_const import (UC_ARM_REG_CPSR, UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_R1,
                               UC_ARM_REG_R2, UC_ARM_REG_R3, UC_ARM_REG_SP)

from harness.arch import CpuRun, Fidelity, Instruction, Layout, NativeFault
from harness.kernel.mm import Pte

PAGE = 0x1000
PAGE_OFFSET = 0xC0000000
TASK_SIZE = PAGE_OFFSET - 0x01000000          # asm/memory.h v4.0 L42: PAGE_OFFSET - 16M
KERNEL_SECTION = (PAGE_OFFSET, PAGE_OFFSET + 0x100000)
VECTORS = 0xFFFF0000                           # the high vectors page (CONFIG_VECTORS_BASE)
PMD_SIZE = 0x200000                            # one Linux pmd: two hardware sections

LAYOUT = Layout(task_size=TASK_SIZE, user_text=0x00010000, kernel_text=0xC0008000,
                user_top=0xBEFFF000, mmap_min_addr=4096)

CPSR_USR = 0x10
CPSR_SVC = 0x13
CPSR_T = 1 << 5
CPSR_I = 1 << 7   # IRQs masked in the aborted context: the handler leaves them off
CPSR_F = 1 << 6

# ARMv7 short-descriptor fault status codes (ARM ARM B3.13.3, Table B3-23).
FS_SECTION_TRANSLATION = 0x5
FS_PAGE_TRANSLATION = 0x7
FS_SECTION_PERMISSION = 0xD
FS_PAGE_PERMISSION = 0xF
FSR_WNR = 1 << 11
DOMAIN_KERNEL = 0
DOMAIN_USER = 1


@dataclass(frozen=True)
class ArmFault(NativeFault):
    """What an ARMv7 abort hands the kernel: the FSR and FAR of the abort taken (DFSR/DFAR for a
    data abort, IFSR/IFAR for a prefetch abort), the aborted context's CPSR (SPSR_abt), its sp,
    and which vector was taken."""

    fsr: int = 0
    far: int = 0
    cpsr: int = 0
    sp: int = 0
    prefetch: bool = False   # prefetch abort vector (instruction fetch) rather than data abort


@dataclass(frozen=True)
class ArmInsn(Instruction):
    thumb: bool = False
    align: int = 1           # the address register is aligned down to this (LDREX/LDRD/LDM need it)
    sp_access: bool = False  # the access is at sp - width (push / stmdb sp!)
    target_thumb: bool = False  # fetch entries: the branch target's state


def _i(name: str, hexbytes: str, access: str, summary: str, *, width: int = 4, thumb: bool = False,
       align: int = 1, sp_access: bool = False, target_thumb: bool = False,
       modes: tuple[str, ...] = ("user", "kernel")) -> ArmInsn:
    return ArmInsn(name, bytes.fromhex(hexbytes), access, summary, modes, width, thumb, align,
                   sp_access, target_thumb)


# Encodings are little-endian instruction memory; tests/test_cpu.py disassembles each with capstone.
_CAT = [
    _i("ldr", "001090e5", "read", "A32 ldr r1, [r0]"),
    _i("str", "001080e5", "write", "A32 str r1, [r0]"),
    _i("ldrb", "0010d0e5", "read", "A32 ldrb r1, [r0]", width=1),
    _i("strb", "0010c0e5", "write", "A32 strb r1, [r0]", width=1),
    _i("ldrh", "b010d0e1", "read", "A32 ldrh r1, [r0]", width=2, align=2),
    _i("strh", "b010c0e1", "write", "A32 strh r1, [r0]", width=2, align=2),
    _i("ldrd", "d020c0e1", "read", "A32 ldrd r2, r3, [r0] (L bit 20 clear: the ev4 decoder sees a store)",
       width=8, align=8),
    _i("strd", "f020c0e1", "write", "A32 strd r2, r3, [r0]", width=8, align=8),
    _i("ldm", "060090e8", "read", "A32 ldm r0, {r1, r2}", width=8, align=4),
    _i("push", "06002de9", "write", "A32 push {r1, r2} (stmdb sp!, {r1, r2})", width=8, sp_access=True),
    _i("ldrex", "9f1f90e1", "read", "A32 ldrex r1, [r0]", align=4),
    _i("strex", "9f1f90e1912f80e1", "write", "A32 ldrex r1, [r0]; strex r2, r1, [r0] (the store needs the monitor)",
       align=4),
    _i("swp", "921000e1", "rmw", "A32 swp r1, r2, [r0] (load, then store)", align=4),
    _i("bx", "10ff2fe1", "fetch", "A32 bx r0: fetch the ARM instruction at the target"),
    _i("blx", "30ff2fe1", "fetch", "A32 blx r0: fetch the ARM instruction at the target"),
    _i("t_ldr", "0168", "read", "T16 ldr r1, [r0]", thumb=True),
    _i("t_str", "0160", "write", "T16 str r1, [r0]", thumb=True),
    _i("t_ldrb", "0178", "read", "T16 ldrb r1, [r0]", thumb=True, width=1),
    _i("t_strb", "0170", "write", "T16 strb r1, [r0]", thumb=True, width=1),
    _i("t_ldrh", "0188", "read", "T16 ldrh r1, [r0]", thumb=True, width=2, align=2),
    _i("t_strh", "0180", "write", "T16 strh r1, [r0]", thumb=True, width=2, align=2),
    _i("t_ldrsb", "8156", "read", "T16 ldrsb r1, [r0, r2] (r2 = 0; bit 11 clear: do_thumb_abort's special case)",
       thumb=True, width=1),
    _i("t_push", "06b4", "write", "T16 push {r1, r2}", thumb=True, width=8, sp_access=True),
    _i("t_ldr_w", "d0f80010", "read", "T32 ldr.w r1, [r0]", thumb=True),
    _i("t_str_w", "c0f80010", "write", "T32 str.w r1, [r0] (first halfword bit 11 set: ev4t sees a load)",
       thumb=True),
    _i("t_ldrex", "50e8001f", "read", "T32 ldrex r1, [r0]", thumb=True, align=4),
    _i("t_strex", "50e8001f40e80012", "write", "T32 ldrex r1, [r0]; strex r2, r1, [r0]", thumb=True, align=4),
    _i("t_bx", "0047", "fetch", "T16 bx r0 to a Thumb target (r0 | 1)", thumb=True, target_thumb=True),
]
CATALOGUE: Mapping[str, ArmInsn] = {i.name: i for i in _CAT}


# -- the hardware view of Linux's page tables --------------------------------------------------

def has_table(ptes: Mapping[int, Pte], addr: int) -> bool:
    """A level-1 table entry exists for addr's 2 MiB pmd once any pte of it was set."""
    base = addr & ~(PMD_SIZE - 1)
    return any(base <= a < base + PMD_SIZE for a in ptes)


def hw_valid(pte: Pte | None) -> bool:
    """cpu_v7_set_pte_ext: the hardware entry is 0 unless present (valid), young and not NONE."""
    return pte is not None and pte.state == "present" and pte.young


def classify(ptes: Mapping[int, Pte], addr: int, access: str, user: bool) -> tuple[int, int] | None:
    """The (FS, domain) of the abort the MMU raises for one access, or None if it is permitted.

    `access` is "read", "write" or "fetch" (a single access; rmw instructions issue read then write).
    """
    addr &= 0xFFFFFFFF
    if addr >= TASK_SIZE:
        if VECTORS <= addr < VECTORS + PAGE:
            # MT_HIGH_VECTORS: a page, L_PTE_USER | L_PTE_RDONLY, DOMAIN_USER: read/exec for all.
            return (FS_PAGE_PERMISSION, DOMAIN_USER) if access == "write" else None
        if KERNEL_SECTION[0] <= addr < KERNEL_SECTION[1]:
            if user:  # AP = 01: privileged access only
                return (FS_SECTION_PERMISSION, DOMAIN_KERNEL)
            return None
        return (FS_SECTION_TRANSLATION, 0)
    if not has_table(ptes, addr):
        return (FS_SECTION_TRANSLATION, 0)
    pte = ptes.get(addr & ~(PAGE - 1))
    if not hw_valid(pte):
        return (FS_PAGE_TRANSLATION, DOMAIN_USER)
    assert pte is not None
    apx = (not pte.write) or (not pte.dirty)
    if user and not pte.user:
        return (FS_PAGE_PERMISSION, DOMAIN_USER)
    if access == "write" and apx:
        return (FS_PAGE_PERMISSION, DOMAIN_USER)
    if access == "fetch" and not pte.exec:
        return (FS_PAGE_PERMISSION, DOMAIN_USER)
    return None


def uc_perms(ptes: Mapping[int, Pte], page: int, user: bool) -> int:
    perms = UC_PROT_NONE
    for kind, bit in (("read", UC_PROT_READ), ("write", UC_PROT_WRITE), ("fetch", UC_PROT_EXEC)):
        if classify(ptes, page, kind, user) is None:
            perms |= bit
    return perms


_ACCESS = {UC_MEM_READ_UNMAPPED: "read", UC_MEM_READ_PROT: "read", UC_MEM_WRITE_UNMAPPED: "write",
           UC_MEM_WRITE_PROT: "write", UC_MEM_FETCH_UNMAPPED: "fetch", UC_MEM_FETCH_PROT: "fetch"}


class UnexpectedStop(RuntimeError):
    """Unicorn stopped for a reason other than a memory fault (undefined instruction, alignment)."""


class ArmCpu:
    """One long-lived Unicorn ARM instance; memory is re-mapped page by page per run."""

    fidelity: Fidelity = "hooked"

    def __init__(self, fidelity: Fidelity = "hooked") -> None:
        if fidelity != "hooked":
            raise ValueError(f"arm: fidelity {fidelity!r} not available (hooked only)")
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
        self.mapped: dict[int, int] = {}   # page -> UC perms currently mapped (4 KiB pages)
        self.uc.mem_map(KERNEL_SECTION[0], KERNEL_SECTION[1] - KERNEL_SECTION[0], UC_PROT_NONE)
        self.section_perms = UC_PROT_NONE
        self.stop: tuple[str, int] | None = None
        self.uc.mem_map(VECTORS, PAGE, UC_PROT_READ | UC_PROT_EXEC)
        self.uc.mem_write(VECTORS, bytes.fromhex("00f020e3"))  # nop
        self.fetch_target = -1
        self.uc.hook_add(UC_HOOK_MEM_INVALID, self._hook)
        self.uc.hook_add(UC_HOOK_CODE, self._code)
        self.clean = self.uc.context_save()

    def _hook(self, uc: Uc, access: int, address: int, size: int, value: int, data: object) -> bool:
        if self.stop is None:
            self.stop = (_ACCESS.get(access, "read"), address)
        return False

    def _code(self, uc: Uc, address: int, size: int, data: object) -> None:
        # A fetch entry: the target was fetched (translated) without a fault; stop before it runs.
        if address == self.fetch_target:
            uc.emu_stop()

    def _map(self, want: dict[int, int]) -> None:
        uc = self.uc
        for page in [p for p in self.mapped if p not in want]:
            uc.mem_unmap(page, PAGE)
            del self.mapped[page]
        for page, perms in want.items():
            if page not in self.mapped:
                uc.mem_map(page, PAGE, perms)
                self.mapped[page] = perms
            elif self.mapped[page] != perms:
                uc.mem_protect(page, PAGE, perms)
                self.mapped[page] = perms

    def execute(self, run: CpuRun) -> ArmFault | None:
        insn = CATALOGUE[run.insn]
        user = run.mode == "user"
        ev4 = bool(run.features.get("abort_ev4", False))
        ptes = dict(run.ptes)
        text = LAYOUT.user_text if user else LAYOUT.kernel_text
        ptes.setdefault(LAYOUT.user_text, Pte("present", write=False, user=True, exec=True, young=True))
        want = {}
        for a in ptes:
            if a < TASK_SIZE and hw_valid(ptes[a]):
                want[a & ~(PAGE - 1)] = uc_perms(ptes, a, user)
        uc = self.uc
        # After a fetch abort or an emu_stop() from a hook, the next emu_start ignores permission
        # changes made before it (observed: a user ldr into the kernel section completed); an
        # empty emu_start first clears that state. Done on every run: it costs a few µs.
        # After an abort or a hook's emu_stop(), the next emu_start ignores permission changes
        # made before it (observed: a user ldr into the kernel section completed after a fetch
        # abort; an empty emu_start(x, x) made it worse). Running one real instruction (a nop on
        # the vectors page) first clears that state; it is done on every run.
        uc.context_restore(self.clean)
        uc.emu_start(VECTORS, VECTORS + 4)
        self._map(want)
        sect = UC_PROT_NONE if user else (UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC)
        if sect != self.section_perms:
            uc.mem_protect(KERNEL_SECTION[0], KERNEL_SECTION[1] - KERNEL_SECTION[0], sect)
            self.section_perms = sect
        if text == LAYOUT.user_text and text not in self.mapped:
            raise UnexpectedStop("user text page not mapped")
        # mem_protect does not drop QEMU's cached TLB entries (a user ldrex into the kernel section
        # completed after a kernel-mode run): flush on every run.
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        # Rewrite the code each run: a store may have hit the text page.
        uc.mem_write(text, insn.encoding)

        uc.reg_write(UC_ARM_REG_CPSR, (CPSR_USR if user else CPSR_SVC) | CPSR_I | CPSR_F)
        addr = run.addr & 0xFFFFFFFF
        if insn.access == "fetch":
            r0 = (addr & ~1) | 1 if insn.target_thumb else addr & ~3
        else:
            r0 = addr & ~(insn.align - 1)
        sp = run.sp & 0xFFFFFFFF   # push / stmdb sp! store at sp - width, whatever addr says
        for reg, v in ((UC_ARM_REG_R0, r0), (UC_ARM_REG_R1, 0), (UC_ARM_REG_R2, 0),
                       (UC_ARM_REG_R3, 0), (UC_ARM_REG_SP, sp)):
            uc.reg_write(reg, v)
        self.stop = None
        self.fetch_target = (r0 & ~1) if insn.access == "fetch" else -1
        start = text | (1 if insn.thumb else 0)
        try:
            if insn.access == "fetch":
                uc.emu_start(start, 0, count=2)
            else:
                uc.emu_start(start, text + len(insn.encoding))
        except UcError as e:
            if self.stop is None:
                raise UnexpectedStop(f"{run.insn}: {e}") from None
        if self.stop is None:
            return None
        kind, far = self.stop
        far &= 0xFFFFFFFF
        cpsr = uc.reg_read(UC_ARM_REG_CPSR)
        pc = uc.reg_read(UC_ARM_REG_PC) & 0xFFFFFFFF
        cls = classify(ptes, far, kind, user)
        if cls is None:
            raise UnexpectedStop(f"{run.insn}: Unicorn faulted on a permitted {kind} at {far:#x}")
        fs, domain = cls
        if kind == "fetch":
            # The aborted context is at the target: pc = IFAR, CPSR.T = the target's state.
            ifsr = (fs & 0xF) | ((fs & 0x10) << 6)
            return ArmFault(pc=far, insn=insn.encoding, user=user, fsr=0 if ev4 else ifsr,
                            far=0 if ev4 else far, cpsr=cpsr, sp=sp, prefetch=True)
        off = pc - text
        size = 4 if not insn.thumb else (4 if (insn.encoding[off + 1] & 0xF8) >= 0xE8 else 2)
        at_pc = insn.encoding[off:off + size]
        dfsr = (fs & 0xF) | ((fs & 0x10) << 6) | (domain << 4)
        if kind == "write" and not ev4:
            dfsr |= FSR_WNR
        return ArmFault(pc=pc, insn=at_pc, user=user, fsr=dfsr, far=far, cpsr=cpsr, sp=sp, prefetch=False)


def make_cpu(fidelity: Fidelity = "hooked") -> ArmCpu:
    return ArmCpu(fidelity)
