"""arm64 CPU for pfdiff, two fidelities over the same page tables:
  * mmu (Arm64Cpu): Unicorn walks real stage-1 tables; ESR/FAR are what the emulated CPU produced.
  * hooked (HookedArm64Cpu, further below): flat memory with per-page permissions and memory hooks;
    the ESR is derived from the access kind, the fault class and the EL per the ARM ARM.
Both report the native fault information the kernel receives: ESR, FAR, PSTATE, SP (+ pc, insn).
A test runs both on random page tables and requires identical NativeFaults.

MMU set-up (Unicorn reference §3.2, with the v4.0 kernel's own register values):
  * 4 KiB granule, VA_BITS = 39 (CONFIG_ARM64_VA_BITS default), so a 3-level walk L1 -> L2 -> L3;
    TTBR0 covers user space [0, 1<<39), TTBR1 the kernel half [0xffffff8000000000, 2^64).
  * TCR_EL1 has TBI0 (proc.S v4.0 L234-235: `TCR_TxSZ(VA_BITS) | ... | TCR_TBI0`), so the top byte of
    a TTBR0 data address is ignored by translation.
  * SCTLR_EL1 = proc.S `crval` set bits 0x34d5d91d (M, C, SA, SA0, I, DZE, UCI, ...), so EL0 may use
    DC ZVA and a misaligned SP faults (SP alignment fault, EC 0x26).
  * The CPU model is UC_CPU_ARM64_MAX (the LSE atomics need it).

Page-table encoding of a kernel Pte, as v4.0 arch/arm64 writes it (pgtable.h, pgtable-hwdef.h):
  * present: a valid page descriptor; PTE_USER (AP[1]) from `user`; PTE_RDONLY (AP[2]) unless the entry
    is write AND dirty (set_pte_at() L214-225: `pte_dirty && pte_write` clears PTE_RDONLY);
    PTE_UXN unless `exec`; PTE_PXN always (every user protection in pgtable.h L84-89 has PTE_PXN);
    PTE_AF from `young` (v4.0 has no hardware AF/DBM management: an old PTE faults with DFSC 0x0B).
  * `rsvd` (x86's reserved bit) would be an output address beyond TCR.IPS, an address-size fault
    (DFSC 0x00-0x03, do_bad). Unicorn 2.1.4 (QEMU 5.0) does not raise address-size faults (probed: the
    access completes), so the bit is not encoded and `rsvd` has no effect on arm64.
  * swap / hwpoison / protnone: not valid (bit 0 clear; PAGE_NONE is PTE_PROT_NONE without PTE_VALID),
    so a translation fault, level 3.
  * Table levels exist as Linux allocates them on demand: an L2 table exists for a 1 GiB region only if
    some entry lies in it, an L3 table for a 2 MiB region likewise; otherwise the walk stops with a
    translation fault at level 1 or 2 (DFSC 0x05 / 0x06).

Unicorn never delivers the abort to VBAR_EL1, so ESR_EL1/FAR_EL1 stay stale; the syndrome and fault
address are read from the CPU state (`exception.syndrome`, `exception.vaddress`) in the context blob,
at offsets calibrated at start-up against a known fault. The ESR is exactly what the CPU produced;
the software exec bit (1<<24) is the entry code's business (legacy.py: el0_ia).

What Unicorn 2.1.4 (QEMU 5.0) cannot produce, probed: ESR.CM (DC CIVAC/CVAC at EL0 are UNDEF, at EL1 a
no-op; the catalogue has no cache-maintenance entry and the CM rule is tested on the models by hand);
PC alignment faults (a `br` to a target with bits [1:0] set just runs); SP alignment faults (a
misaligned-SP `stp` completes despite SCTLR.SA0); address-size faults (above). The scenarios these
would change behave as if the check passed, identically for legacy and generic.
DC ZVA: one fault, PC precise, FAR = Xt as given (not the block base).
A `ldxr; stxr` pair is re-run from the ldxr after a fault, like the retry loop it stands for.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Mapping

from unicorn import (UC_ARCH_ARM64, UC_CTL_IO_WRITE, UC_HOOK_INTR, UC_HOOK_MEM_INVALID,
                     UC_MEM_FETCH_PROT, UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_PROT,
                     UC_MEM_WRITE_UNMAPPED, UC_MODE_ARM, UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_NONE,
                     UC_PROT_READ, UC_PROT_WRITE, UC_TLB_CPU, Uc, UcError)
from unicorn import arm64_const as A
from unicorn.unicorn_const import UC_CTL_TLB_FLUSH

from harness.arch import CpuRun, Instruction, Layout, NativeFault
from harness.kernel.mm import Pte

PAGE = 4096
VA_BITS = 39
TASK_SIZE = 1 << VA_BITS
PAGE_OFFSET = (0xFFFFFFFFFFFFFFFF << (VA_BITS - 1)) & 0xFFFFFFFFFFFFFFFF  # 0xffffffc000000000
TTBR1_BASE = (1 << 64) - (1 << VA_BITS)                                    # 0xffffff8000000000

LAYOUT = Layout(
    task_size=TASK_SIZE,
    user_text=0x400000,
    kernel_text=PAGE_OFFSET + 0x80000,   # TEXT_OFFSET 0x80000
    user_top=TASK_SIZE - PAGE,
    mmap_min_addr=4096,                 # mm/Kconfig v4.0 DEFAULT_MMAP_MIN_ADDR default 4096
)

# PSTATE
PSR_MODE_EL0t = 0x0
PSR_MODE_EL1h = 0x5
PSR_MODE_MASK = 0xF
PSTATE_EL1 = 0x3C5  # EL1h, DAIF masked (Unicorn's reset state; the kernel runs with IRQs on/off alike)
PSTATE_EL0 = 0x0    # EL0t, interrupts enabled (what SPSR_EL1 holds for user space)

# ESR fields (ARM ARM D13.2.37; v4.0 asm/esr.h L73-90)
EC_SHIFT = 26
EC_IABT_LOW, EC_IABT_CUR, EC_PC_ALIGN, EC_DABT_LOW, EC_DABT_CUR, EC_SP_ALIGN = 0x20, 0x21, 0x22, 0x24, 0x25, 0x26
ABORT_ECS = (EC_IABT_LOW, EC_IABT_CUR, EC_PC_ALIGN, EC_DABT_LOW, EC_DABT_CUR, EC_SP_ALIGN)
ESR_IL = 1 << 25
ESR_WNR = 1 << 6
ESR_CM = 1 << 8

# Descriptor bits (pgtable-hwdef.h v4.0)
D_VALID = 1 << 0
D_TABLE = 1 << 1     # with VALID: table (levels 1-2) / page (level 3)
D_ATTRIDX0 = 0
D_USER = 1 << 6      # AP[1]
D_RDONLY = 1 << 7    # AP[2]
D_SH_INNER = 3 << 8
D_AF = 1 << 10
D_NG = 1 << 11
D_PXN = 1 << 53
D_UXN = 1 << 54

# Physical memory plan
PHYS_SIZE = 8 << 20
PA_TTBR0 = 0x1000
PA_TTBR1 = 0x2000
PA_TABLES = 0x3000       # further tables allocated from here
PA_TABLES_END = 0x80000
PA_KTEXT = 0x80000       # kernel text frame
PA_UTEXT = 0x81000       # user text frame
PA_FRAMES = 0x100000     # data frames (zero-filled: an instruction fetch from one hits UDF)

STUB_OFFSET = 0x800      # the EL1 `eret` stub inside the kernel text page, for EL0 runs

# QEMU exception numbers (target/arm/cpu.h)
EXCP_PREFETCH_ABORT = 3
EXCP_DATA_ABORT = 4


@dataclass(frozen=True)
class Arm64Fault(NativeFault):
    """What the CPU hands do_mem_abort()'s callers: ESR_EL1 and FAR_EL1 as the exception sets them,
    the interrupted PSTATE (pt_regs->pstate: SPSR_EL1) and SP (pt_regs->sp: SP_EL0 for a user fault)."""

    esr: int
    far: int
    pstate: int
    sp: int

    @property
    def ec(self) -> int:
        return self.esr >> EC_SHIFT

    @property
    def fsc(self) -> int:
        return self.esr & 0x3F


# -- the catalogue -------------------------------------------------------------------------------
# Encodings (ARM ARM C6); each is checked by capstone in tests/test_cpu.py. Register use: x1 = addr,
# x0/x2/x3 = data; the instruction is followed by `brk #0` (completion).
BRK0 = bytes.fromhex("000020d4")


def _i(name: str, hexle: str, access: str, summary: str, modes=("user", "kernel"), width: int = 8) -> Instruction:
    return Instruction(name, bytes.fromhex(hexle), access, summary, modes, width)  # type: ignore[arg-type]


CATALOGUE: dict[str, Instruction] = {i.name: i for i in (
    _i("ldrb", "22004039", "read", "ldrb w2, [x1]", width=1),
    _i("ldrh", "22004079", "read", "ldrh w2, [x1]", width=2),
    _i("ldr_w", "220040b9", "read", "ldr w2, [x1]", width=4),
    _i("ldr_x", "220040f9", "read", "ldr x2, [x1]", width=8),
    _i("strb", "20000039", "write", "strb w0, [x1]", width=1),
    _i("strh", "20000079", "write", "strh w0, [x1]", width=2),
    _i("str_w", "200000b9", "write", "str w0, [x1]", width=4),
    _i("str_x", "200000f9", "write", "str x0, [x1]", width=8),
    _i("ldp", "220c40a9", "read", "ldp x2, x3, [x1] (16 bytes, may cross a page)", width=16),
    _i("stp", "200800a9", "write", "stp x0, x2, [x1] (16 bytes, may cross a page)", width=16),
    _i("stp_sp_pre", "fd7bbfa9", "write",
       "stp x29, x30, [sp, #-16]! (function prologue; accesses sp-16, addr unused)", ("user",), 16),
    _i("ldxr", "227c5fc8", "read", "ldxr x2, [x1] (exclusive load)"),
    _i("ldxr_stxr", "227c5fc8237c03c8", "write",
       "ldxr x2, [x1]; stxr w3, x3, [x1] (an exclusive read-modify-write pair)"),
    _i("ldadd", "220020f8", "rmw", "ldadd x0, x2, [x1] (LSE atomic, ARMv8.1)"),
    _i("casal", "20fce2c8", "rmw", "casal x2, x0, [x1] (LSE compare-and-swap, ARMv8.1)"),
    _i("dc_zva", "21740bd5", "write", "dc zva, x1 (zero a 64-byte block)", width=64),
    _i("br", "20001fd6", "fetch", "br x1 (fetch from addr)", width=4),
)}


def _syndrome_probe_ok(raw: bytes, off_esr: int, off_far: int, esr: int, far: int) -> bool:
    return (struct.unpack_from("<I", raw, off_esr)[0] == esr
            and struct.unpack_from("<Q", raw, off_far)[0] == far)


class Arm64Cpu:
    """One long-lived Unicorn arm64 instance; page tables are rebuilt from the kernel's PTEs per run."""

    fidelity = "mmu"

    def __init__(self, fidelity: str = "mmu") -> None:
        if fidelity != "mmu":
            raise ValueError(f"arm64: fidelity {fidelity!r} is not implemented (only 'mmu')")
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)
        uc.ctl_set_tlb_mode(UC_TLB_CPU)
        uc.mem_map(0, PHYS_SIZE, UC_PROT_ALL)
        self.uc = uc
        self._fault: tuple[int, int] | None = None   # (intno, pc) of the exception that stopped it
        self._other: int | None = None
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self._sys(3, 6, 1, 1, 0, 0x401)            # SCR_EL3: RW | NS
        self._sys(3, 4, 1, 1, 0, 1 << 31)          # HCR_EL2: RW
        self._sys(3, 0, 10, 2, 0, 0xFF)            # MAIR_EL1: attr0 = normal WB
        t0sz = t1sz = 64 - VA_BITS
        tcr = (t0sz | (1 << 8) | (1 << 10) | (3 << 12)          # TTBR0: 4K, WBWA, inner shareable
               | (t1sz << 16) | (1 << 24) | (1 << 26) | (3 << 28) | (2 << 30)  # TTBR1: 4K granule
               | (2 << 32)                                       # IPS: 40-bit PA (a Cortex-A53)
               | (1 << 37))                                      # TBI0
        self._sys(3, 0, 2, 0, 2, tcr)              # TCR_EL1
        self._sys(3, 0, 2, 0, 0, PA_TTBR0)         # TTBR0_EL1
        self._sys(3, 0, 2, 0, 1, PA_TTBR1)         # TTBR1_EL1
        self._sys(3, 0, 12, 0, 0, PAGE_OFFSET)     # VBAR_EL1 (never entered by Unicorn)
        self._sys(3, 0, 1, 0, 0, 0x34D5D91D | 1)   # SCTLR_EL1: proc.S crval | M
        uc.mem_write(PA_KTEXT + STUB_OFFSET, bytes.fromhex("e0039fd6"))  # eret
        self._code: tuple[str, str] | None = None
        self.clean = uc.context_save()
        self.off_esr, self.off_far = self._calibrate()

    def _sys(self, op0: int, op1: int, crn: int, crm: int, op2: int, value: int) -> None:
        self.uc.cpr_write(op0, op1, crn, crm, op2, value)  # type: ignore[attr-defined]

    # -- exceptions --------------------------------------------------------------------------------
    def _on_intr(self, uc: Uc, intno: int, user_data: object) -> None:
        if intno in (EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT) or self._is_alignment(intno):
            self._fault = (intno, uc.reg_read(A.UC_ARM64_REG_PC))
        else:
            self._other = intno
        uc.emu_stop()

    def _is_alignment(self, intno: int) -> bool:
        """PC/SP alignment faults arrive as QEMU's EXCP_UDEF with EC 0x22/0x26 in the syndrome."""
        if intno != 1 or not hasattr(self, "off_esr"):
            return False
        esr = self._read_esr()[0]
        return esr >> EC_SHIFT in (EC_PC_ALIGN, EC_SP_ALIGN)

    def _read_esr(self) -> tuple[int, int]:
        raw = bytes(self.uc.context_save())
        return (struct.unpack_from("<I", raw, self.off_esr)[0], struct.unpack_from("<Q", raw, self.off_far)[0])

    def _calibrate(self) -> tuple[int, int]:
        """Find exception.syndrome / exception.vaddress in the context blob: two EL1 loads from
        unmapped addresses; the ARM ARM gives ESR = EC 0x25 | IL | DFSC 0x05 (level-1 translation
        fault, no L2 table) = 0x96000005 for each."""
        found = None
        for far in (0x12345678 << 4, 0x23456789 << 4):
            self._prepare(CpuRun("ldr_x", "kernel", far, 0, {}, {}))
            self._fault = None
            self._go("kernel")
            raw = bytes(self.uc.context_save())
            cands = {(e, f) for e in range(0, len(raw) - 4, 4) for f in (e + 8,)
                     if f + 8 <= len(raw) and _syndrome_probe_ok(raw, e, f, 0x96000005, far)}
            found = cands if found is None else found & cands
        if not found or len(found) != 1:
            raise RuntimeError(f"arm64: cannot calibrate the ESR/FAR offsets in the context blob: {found}")
        return found.pop()

    # -- page tables -------------------------------------------------------------------------------
    def _build_tables(self, ptes: dict[int, Pte], mode: str) -> None:
        uc = self.uc
        uc.mem_write(PA_TTBR0, bytes(2 * PAGE))  # both L1 tables
        next_table = [PA_TABLES]
        tables: dict[tuple[int, int, int], int] = {}
        next_frame = [PA_FRAMES]

        def table_for(root: int, key: tuple[int, int, int], parent: int, index: int) -> int:
            pa = tables.get(key)
            if pa is None:
                pa = next_table[0]
                next_table[0] += PAGE
                if next_table[0] > PA_TABLES_END:
                    raise RuntimeError("arm64: out of page-table memory")
                uc.mem_write(pa, bytes(PAGE))
                uc.mem_write(parent + 8 * index, struct.pack("<Q", pa | D_VALID | D_TABLE))
                tables[key] = pa
            return pa

        def install(va: int, desc_bits: int, pa: int | None) -> None:
            root = PA_TTBR1 if va >= TTBR1_BASE else PA_TTBR0
            i1, i2, i3 = (va >> 30) & 511, (va >> 21) & 511, (va >> 12) & 511
            l2 = table_for(root, (root, 2, va >> 30), root, i1)
            l3 = table_for(root, (root, 3, va >> 21), l2, i2)
            if pa is None:
                pa = next_frame[0]
                next_frame[0] += PAGE
                if next_frame[0] > PHYS_SIZE:
                    raise RuntimeError("arm64: out of physical frames for the page tables' entries")
                uc.mem_write(pa, bytes(PAGE))
            uc.mem_write(l3 + 8 * i3, struct.pack("<Q", desc_bits | pa if desc_bits else 0))

        # init_mm: the kernel text page, EL1 read/exec only.
        install(LAYOUT.kernel_text, D_VALID | D_TABLE | D_AF | D_SH_INNER | D_RDONLY | D_UXN, PA_KTEXT)
        for va, pte in sorted(ptes.items()):
            if not (va < TASK_SIZE):
                continue  # the user page tables (TTBR0) only hold user addresses
            install(va, self.descriptor(pte), PA_UTEXT if va == LAYOUT.user_text else None)

    @staticmethod
    def descriptor(pte: Pte) -> int:
        """The level-3 descriptor bits (without the output address) v4.0 writes for a Pte."""
        if pte.state != "present":
            return 0  # not valid: swap/hwpoison entries and PAGE_NONE
        d = D_VALID | D_TABLE | D_ATTRIDX0 | D_SH_INNER | D_NG | D_PXN
        if pte.user:
            d |= D_USER
        if not (pte.write and pte.dirty):
            d |= D_RDONLY
        if not pte.exec:
            d |= D_UXN
        if pte.young:
            d |= D_AF
        return d

    # -- running -----------------------------------------------------------------------------------
    def _prepare(self, run: CpuRun) -> None:
        uc = self.uc
        uc.context_restore(self.clean)
        insn = CATALOGUE[run.insn]
        code = insn.encoding + BRK0
        if self._code != (run.mode, run.insn):
            if run.mode == "user":
                uc.mem_write(PA_UTEXT, code + bytes(PAGE - len(code)))
            else:
                uc.mem_write(PA_KTEXT, code + bytes(STUB_OFFSET - len(code)))
            uc.ctl_flush_tb()  # translated blocks are cached by virtual PC: drop the old code's
            self._code = (run.mode, run.insn)
        ptes = dict(run.ptes)
        self._build_tables(ptes, run.mode)
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        uc.reg_write(A.UC_ARM64_REG_X0, 0x1111111111111111)
        uc.reg_write(A.UC_ARM64_REG_X1, run.addr)
        uc.reg_write(A.UC_ARM64_REG_X2, 0)
        uc.reg_write(A.UC_ARM64_REG_X3, 0)
        uc.reg_write(A.UC_ARM64_REG_X29, 0)
        uc.reg_write(A.UC_ARM64_REG_X30, 0)
        if run.mode == "user":
            self._sys(3, 0, 4, 0, 0, PSTATE_EL0)          # SPSR_EL1
            self._sys(3, 0, 4, 0, 1, LAYOUT.user_text)    # ELR_EL1
            self._sys(3, 0, 4, 1, 0, run.sp)              # SP_EL0
        else:
            uc.reg_write(A.UC_ARM64_REG_SP, run.sp)

    def _go(self, mode: str) -> None:
        start = LAYOUT.kernel_text + (STUB_OFFSET if mode == "user" else 0)
        try:
            self.uc.emu_start(start, 0, count=8)
        except UcError:  # a fault stops emulation with an error; the hooks have recorded it
            pass

    def execute(self, run: CpuRun) -> Arm64Fault | None:
        self._prepare(run)
        self._fault = None
        self._other = None
        self._go(run.mode)
        if self._fault is None:
            return None
        intno, pc = self._fault
        esr, far = self._read_esr()
        insn = CATALOGUE[run.insn]
        base = LAYOUT.user_text if run.mode == "user" else LAYOUT.kernel_text
        ec = esr >> EC_SHIFT
        if ec in (EC_IABT_LOW, EC_IABT_CUR):
            # The exception is taken at the fetch target; the instruction that branched there is
            # the catalogue's (pt_regs->pc is the target).
            off = 0
        else:
            off = pc - base
        insn_bytes = insn.encoding[off:off + 4] if 0 <= off < len(insn.encoding) else b""
        # No exception entry happened, so the CPU is still at the faulting EL: SP is the
        # interrupted context's (SP_EL0 for a user fault), PSTATE its mode (SPSR_EL1 on entry).
        pstate = PSTATE_EL0 if run.mode == "user" else PSTATE_EL1
        sp = self.uc.reg_read(A.UC_ARM64_REG_SP)
        return Arm64Fault(pc=pc, insn=insn_bytes, user=run.mode == "user", esr=esr, far=far,
                          pstate=pstate, sp=sp)


# -- hooked fidelity ------------------------------------------------------------------------------

def _table_level_missing(va: int, ptes: Mapping[int, Pte]) -> int | None:
    """The translation-fault level the walk of `va` stops at before level 3 (tables as
    Arm64Cpu._build_tables allocates them), or None if it reaches the level-3 entry."""
    if va >= TTBR1_BASE:
        keys = [LAYOUT.kernel_text]
    elif va < TASK_SIZE:
        keys = [a for a in ptes if a < TASK_SIZE]
    else:
        return 0  # outside both TTBR ranges: level 0 translation fault
    if not any(a >> 30 == va >> 30 for a in keys):
        return 1
    if not any(a >> 21 == va >> 21 for a in keys):
        return 2
    return None


def _untag(va: int, fetch: bool = False) -> int:
    """TCR_EL1.TBI0 (v4.0 proc.S): a TTBR0 address (bit 55 clear) is translated without its top byte;
    a branch to one also drops the tag from the PC (what the MMU-mode CPU does: the fetch faults at,
    and FAR holds, the untagged target)."""
    if not va & (1 << 55):
        return va & ~(0xFF << 56)
    return va


# Flat-memory placement for the hooked CPU: with the MMU off, an address must fit the PA range, so the
# TTBR1 half is aliased just above user space and addresses in neither half go to a hole beyond that.
ALIAS_BASE = 1 << VA_BITS          # [2^39, 2^40): the TTBR1 range [2^64 - 2^39, 2^64)
HOLE_BASE = 1 << (VA_BITS + 1)     # 2^40 + low bits: never mapped


def _flat(va: int, fetch: bool) -> int:
    v = _untag(va, fetch)
    if v < TASK_SIZE:
        return v
    if v >= TTBR1_BASE:
        return ALIAS_BASE + (v - TTBR1_BASE)
    return HOLE_BASE + (v & 0xFFFFFFF)


class HookedArm64Cpu:
    """Hooked fidelity: flat Unicorn memory (MMU off), one 4 KiB region per page-table entry with the
    UC_PROT_* the descriptor grants at the run's EL, and UC_HOOK_MEM_INVALID to see the access. The
    ESR is derived per the ARM ARM from what the hook saw: EC from the EL and fetch/data, WnR from the
    access kind the hook reports (for an atomic QEMU probes the read first, so a fault a read would take
    reports a read, as ESR.WnR requires), and the FSC from the walk of the same page tables
    (translation level / access flag / permission). Unicorn's hooked page size is 1 KiB; regions are
    mapped at 4 KiB, the kernel's granule. Alignment faults (exclusives, atomics) do not reach the
    memory hooks: they arrive as a data abort (intno 4) whose syndrome ISS (WnR, FSC) is read from the
    CPU state, the EC being set from the run's EL.
    With the MMU off the CPU ignores TCR and the PA range bounds every address, so this class does the
    address placement itself (`_flat`): TBI0 untagging, the kernel half aliased at 2^39, other
    addresses into a never-mapped hole; the hook's address is mapped back to the VA the instruction
    formed (tag included) for FAR, and the pc to the text page's VA. The instruction runs at EL1 in
    both modes: with the MMU off the EL changes nothing but the EC, which is derived.
    Known gap: a page-crossing read into an execute-only EL0 page (AP[1]=0, UXN=0, so mapped X only)
    completes, as Unicorn does not check read permission on the second page of such an access.
    dc zva: Unicorn calls the hook once per byte (66 calls) and stops with an imprecise PC; the first
    call's address (= Xt, what the MMU-mode CPU puts in FAR) and PC are kept, so it is precise here."""

    fidelity = "hooked"

    def __init__(self) -> None:
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)
        self.uc = uc
        self.mapped: dict[int, int] = {}   # flat page -> UC_PROT_*
        self._code: tuple[str, str] | None = None
        self._event: tuple[int, int, int] | None = None  # (uc access type, flat address, flat pc)
        self._intr: int | None = None
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.cpr_write(3, 6, 1, 1, 0, 0x401)     # SCR_EL3: RW | NS, else QEMU reports AArch32 short FSCs
        uc.cpr_write(3, 4, 1, 1, 0, 1 << 31)   # HCR_EL2: RW
        uc.cpr_write(3, 0, 1, 0, 0, 0x34D5D91D & ~1)  # SCTLR_EL1: v4.0 crval with the MMU off
        self.clean = uc.context_save()
        self.off_esr = -1
        self.off_esr = self._calibrate()

    def _on_invalid(self, uc: Uc, access: int, address: int, size: int, value: int, data: object) -> bool:
        if self._event is None:
            self._event = (access, address, uc.reg_read(A.UC_ARM64_REG_PC))
        return False

    def _on_intr(self, uc: Uc, intno: int, data: object) -> None:
        self._intr = intno
        uc.emu_stop()

    def _calibrate(self) -> int:
        """exception.syndrome: an EL1 ldxr from a misaligned address gives ESR 0x96000021 (EC 0x25,
        IL, alignment fault) and FAR = the address; the two fields sit 8 bytes apart."""
        found = None
        for addr in (0x10000004, 0x10000FF4):
            self._run(CpuRun("ldxr", "kernel", addr, 0, {addr & ~0xFFF: Pte("present", user=True)}, {}))
            raw = bytes(self.uc.context_save())
            cands = {e for e in range(0, len(raw) - 16, 4) if _syndrome_probe_ok(raw, e, e + 8, 0x96000021, addr)}
            found = cands if found is None else found & cands
        if not found or len(found) != 1:
            raise RuntimeError(f"arm64 hooked: cannot calibrate the syndrome offset: {found}")
        return found.pop()

    @staticmethod
    def page_prot(pte: Pte | None, mode: str, kernel_page: bool = False) -> int | None:
        """UC_PROT_* the descriptor grants at this EL; None: not valid (a translation fault)."""
        if pte is None or pte.state != "present":
            return None
        if not pte.young:
            return UC_PROT_NONE  # valid, AF clear: every access takes an access-flag fault
        el0 = mode == "user"
        prot = UC_PROT_NONE
        if not el0 or pte.user:  # AP[1] gates EL0 data access only
            prot |= UC_PROT_READ
            if pte.write and pte.dirty and not kernel_page:  # AP[2] (PTE_RDONLY)
                prot |= UC_PROT_WRITE
        # EL0 execution depends on UXN alone (ARM ARM: stage 1 EL1&0 execute-never controls);
        # EL1 never executes a user page (PTE_PXN on every user protection).
        if (el0 and pte.exec and not kernel_page) or (not el0 and kernel_page):  # init_mm text: UXN
            prot |= UC_PROT_EXEC
        return prot

    @staticmethod
    def tables(run: CpuRun) -> dict[int, tuple[Pte, bool]]:
        """VA page -> (entry, is the kernel's own page): the user entries plus init_mm's text page."""
        pages = {va: (pte, False) for va, pte in run.ptes.items() if va < TASK_SIZE}
        pages[LAYOUT.kernel_text] = (Pte("present", user=False, exec=True), True)
        return pages

    def _map(self, run: CpuRun, pages: dict[int, tuple[Pte, bool]]) -> None:
        uc = self.uc
        want = {}
        for va, (pte, kpage) in pages.items():
            prot = self.page_prot(pte, run.mode, kpage)
            # A no-access page stays unmapped: Unicorn 2.1.4 lets a page-crossing read into a
            # mapped UC_PROT_NONE page complete (probed: ldr x2,[x1] at 0x...ffc). The fault class
            # comes from the tables anyway, not from UNMAPPED vs PROT.
            if prot:
                want[_flat(va, False)] = prot
        for pa in list(self.mapped):
            if pa not in want:
                uc.mem_unmap(pa, PAGE)
                del self.mapped[pa]
        for pa, prot in want.items():
            have = self.mapped.get(pa)
            if have is None:
                uc.mem_map(pa, PAGE, prot)
            elif have != prot:
                uc.mem_protect(pa, PAGE, prot)
            self.mapped[pa] = prot

    def _run(self, run: CpuRun) -> tuple[int, dict[int, tuple[Pte, bool]]]:
        uc = self.uc
        uc.context_restore(self.clean)
        pages = self.tables(run)
        self._map(run, pages)
        insn = CATALOGUE[run.insn]
        base = _flat(LAYOUT.user_text if run.mode == "user" else LAYOUT.kernel_text, True)
        prot = self.mapped.get(base)
        if prot is not None:  # (re)write the code: a page unmapped by an earlier run lost it
            code = insn.encoding + BRK0
            uc.mem_protect(base, PAGE, UC_PROT_ALL)
            uc.mem_write(base, code + bytes(PAGE - len(code)))
            uc.mem_protect(base, PAGE, prot)
        if self._code != (run.mode, run.insn):
            uc.ctl_flush_tb()  # translated blocks are cached by address: drop the old code's
            self._code = (run.mode, run.insn)
        uc.reg_write(A.UC_ARM64_REG_X0, 0x1111111111111111)
        uc.reg_write(A.UC_ARM64_REG_X1, _flat(run.addr, insn.access == "fetch"))
        for r in (A.UC_ARM64_REG_X2, A.UC_ARM64_REG_X3, A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30):
            uc.reg_write(r, 0)
        uc.reg_write(A.UC_ARM64_REG_SP, _flat(run.sp, False))
        self._event = None
        self._intr = None
        try:
            uc.emu_start(base, 0, count=8)
        except UcError:  # a fault stops emulation with an error; the hooks have recorded it
            pass
        return base, pages

    def execute(self, run: CpuRun) -> Arm64Fault | None:
        base, pages = self._run(run)
        insn = CATALOGUE[run.insn]
        user = run.mode == "user"
        text = LAYOUT.user_text if user else LAYOUT.kernel_text
        # The VA the instruction formed its address from, and where that sits in flat memory.
        origin = run.sp - 16 if run.insn == "stp_sp_pre" else run.addr
        fetch = insn.access == "fetch"
        if fetch:
            origin = _untag(origin)
        if self._event is not None:
            access, address, flat_pc = self._event
            is_fetch = access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT)
            write = access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT)
            far = (origin + (address - _flat(origin, fetch))) & 0xFFFFFFFFFFFFFFFF
            va = _untag(far, is_fetch)
            level = _table_level_missing(va, run.ptes)
            entry = pages.get(va & ~0xFFF)
            if level is not None:
                fsc = 0x04 + level
            elif entry is None or entry[0].state != "present":
                fsc = 0x07
            elif not entry[0].young:
                fsc = 0x0B
            else:
                fsc = 0x0F
            if is_fetch:
                esr = ((EC_IABT_LOW if user else EC_IABT_CUR) << EC_SHIFT) | ESR_IL | fsc
            else:
                esr = (((EC_DABT_LOW if user else EC_DABT_CUR) << EC_SHIFT) | ESR_IL
                       | (ESR_WNR if write else 0) | fsc)
        elif self._intr == EXCP_DATA_ABORT and self.off_esr >= 0:  # alignment: the hooks never saw it
            raw = bytes(self.uc.context_save())
            syn = struct.unpack_from("<I", raw, self.off_esr)[0]
            address = struct.unpack_from("<Q", raw, self.off_esr + 8)[0]
            far = (origin + (address - _flat(origin, False))) & 0xFFFFFFFFFFFFFFFF
            flat_pc = self.uc.reg_read(A.UC_ARM64_REG_PC)
            esr = ((EC_DABT_LOW if user else EC_DABT_CUR) << EC_SHIFT) | (syn & ((1 << EC_SHIFT) - 1))
            is_fetch = False
        else:
            return None
        if is_fetch:
            pc = far
            insn_bytes = insn.encoding[:4]
        else:
            off = flat_pc - base
            pc = text + off
            insn_bytes = insn.encoding[off:off + 4] if 0 <= off < len(insn.encoding) else b""
        return Arm64Fault(pc=pc, insn=insn_bytes, user=user, esr=esr, far=far,
                          pstate=PSTATE_EL0 if user else PSTATE_EL1, sp=run.sp)


def make_cpu(fidelity: str = "mmu") -> "Arm64Cpu | HookedArm64Cpu":
    if fidelity == "hooked":
        return HookedArm64Cpu()
    return Arm64Cpu(fidelity)
