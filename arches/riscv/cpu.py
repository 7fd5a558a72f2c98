"""riscv64 CPU for pfdiff: Unicorn in Sv39 MMU mode (fidelity "mmu") and flat memory with per-page
permissions (fidelity "hooked"), the instruction catalogue, and the NativeFault the trap entry hands
do_page_fault(): scause, stval (sbadaddr in v4.15), sepc, sstatus and sp.

MMU mode (Unicorn reference §3.3): guest Sv39 page tables rebuilt from the kernel's PTEs on every
run, the CPU put in S or U mode through the PRIV pseudo-register after every CSR is written.
Unicorn never enters the trap vector, so the CSRs stay stale: scause is the UC_HOOK_INTR intno,
stval is QEMU's env->badaddr read from the context blob at an offset calibrated at start-up, and
sepc is the hook PC minus 4 (Unicorn adds 4 to the PC for every RISC-V exception). sstatus is the
value the trap entry would leave: SPP from the mode the CPU ran in, SPIE set (Linux runs user
code and its uaccess sections with interrupts enabled), SUM as the kernel had set it.

Hooked mode derives the same fields from the access kind and the privileged spec's rules
(riscv-privileged v1.10 §4.3.2 "Virtual Address Translation Process": one cause per access
kind whatever the reason, stval = the faulting virtual address, sepc = the faulting instruction,
or the fetch target for an instruction page fault).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Mapping

from unicorn import (UC_ARCH_RISCV, UC_HOOK_INTR, UC_HOOK_MEM_INVALID, UC_MEM_FETCH_PROT,
                     UC_MEM_FETCH_UNMAPPED, UC_MODE_RISCV64, UC_PROT_ALL,
                     UC_PROT_EXEC, UC_PROT_NONE, UC_PROT_READ, UC_PROT_WRITE, Uc, UcError)
from unicorn.riscv_const import (UC_RISCV_REG_A0, UC_RISCV_REG_A1, UC_RISCV_REG_A2,
                                 UC_RISCV_REG_MSTATUS, UC_RISCV_REG_PC, UC_RISCV_REG_PRIV,
                                 UC_RISCV_REG_RA, UC_RISCV_REG_S0, UC_RISCV_REG_SATP,
                                 UC_RISCV_REG_SP)
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH, UC_TLB_CPU

from harness.arch import CpuRun, Instruction, Layout, NativeFault
from harness.kernel.mm import Pte

# -- architectural constants (riscv-privileged v1.10) ------------------------------------------
EXC_INST_PAGE_FAULT = 12
EXC_LOAD_PAGE_FAULT = 13
EXC_STORE_PAGE_FAULT = 15
PAGE_FAULT_CAUSES = (EXC_INST_PAGE_FAULT, EXC_LOAD_PAGE_FAULT, EXC_STORE_PAGE_FAULT)

SR_SPIE = 1 << 5
SR_SPP = 1 << 8
SR_SUM = 1 << 18

# Sv39 PTE bits
PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_G, PTE_A, PTE_D = (1 << i for i in range(8))
SATP_MODE_SV39 = 8 << 60

PAGE = 4096

# Linux riscv64 (v4.15): TASK_SIZE = PGDIR_SIZE * PTRS_PER_PGD / 2 = 256 GiB; PAGE_OFFSET
# 0xffffffe000000000; the vmalloc area is the 64 GiB below it.
LAYOUT = Layout(task_size=0x4000000000, user_text=0x10000, kernel_text=0xFFFFFFE000200000,
                user_top=0x3FFFFFF000)
VMALLOC_START = 0xFFFFFFD000000000
VMALLOC_END = 0xFFFFFFDFFFFFFFFF


@dataclass(frozen=True)
class RiscvFault(NativeFault):
    """What arch/riscv/kernel/entry.S saves in pt_regs for do_page_fault()."""

    scause: int
    stval: int
    sepc: int
    sstatus: int
    sp: int


def _ins(name: str, hexbytes: str, access: str, summary: str, width: int,
         modes: tuple[str, ...] = ("user", "kernel")) -> Instruction:
    return Instruction(name, bytes.fromhex(hexbytes), access, summary, modes, width)  # type: ignore[arg-type]


# Registers: a0 holds `addr`, a1/a2/ra/s0 data, sp holds `sp`. Encodings are little-endian RV64GC.
CATALOGUE: dict[str, Instruction] = {i.name: i for i in (
    _ins("lb", "83050500", "read", "lb a1, 0(a0)", 1),
    _ins("lh", "83150500", "read", "lh a1, 0(a0)", 2),
    _ins("lw", "83250500", "read", "lw a1, 0(a0)", 4),
    _ins("ld", "83350500", "read", "ld a1, 0(a0)", 8),
    _ins("sb", "2300b500", "write", "sb a1, 0(a0)", 1),
    _ins("sh", "2310b500", "write", "sh a1, 0(a0)", 2),
    _ins("sw", "2320b500", "write", "sw a1, 0(a0)", 4),
    _ins("sd", "2330b500", "write", "sd a1, 0(a0)", 8),
    _ins("sd_ra_sp_m8", "233c11fe", "write", "sd ra, -8(sp): a prologue spill (addr is ignored)", 8),
    _ins("sd_s0_sp_m16", "233881fe", "write", "sd s0, -16(sp): a prologue spill (addr is ignored)", 8),
    _ins("amoadd.d", "af35c500", "rmw", "amoadd.d a1, a2, (a0): store/AMO cause even though it reads", 8),
    _ins("amoswap.w", "af25c508", "rmw", "amoswap.w a1, a2, (a0)", 4),
    _ins("lr.d", "af350510", "read", "lr.d a1, (a0): a load page fault", 8),
    _ins("lr_sc.d", "af350510af35c518", "rmw",
         "lr.d a1, (a0); sc.d a1, a2, (a0): the body of an LR/SC loop; sc stores only with the reservation", 8),
    _ins("sc.d", "af35c518", "write",
         "sc.d a1, a2, (a0) with no reservation: fails without accessing memory, never faults "
         "(Unicorn and the ISA agree: a failed SC need not access memory)", 8),
    _ins("jalr", "67000500", "fetch", "jr a0 (jalr x0, 0(a0)): the fetch at the target faults", 4),
)}

# Atomics need natural alignment (a misaligned AMO/LR/SC raises an address-misaligned exception,
# cause 4/6, which is not a page fault). The address register holds `addr` rounded down.
_ALIGNED = {"amoadd.d", "amoswap.w", "lr.d", "lr_sc.d", "sc.d"}
_SP_RELATIVE = {"sd_ra_sp_m8": -8, "sd_s0_sp_m16": -16}


def effective_address(insn: Instruction, addr: int, sp: int) -> int:
    """The address of the instruction's (first) data access, or the fetch target."""
    if insn.name in _SP_RELATIVE:
        return (sp + _SP_RELATIVE[insn.name]) % (1 << 64)
    if insn.name in _ALIGNED:
        return addr & ~(insn.width - 1)
    return addr


def _faulting_part(insn: Instruction, offset: int) -> str:
    """The access kind of the instruction at `offset` in the catalogue entry (lr_sc.d is two)."""
    if insn.name == "lr_sc.d":
        return "read" if offset == 0 else "rmw"
    return insn.access


def _instruction_count(insn: Instruction) -> int:
    """How many instructions a run executes: the catalogue entry's own, never one more.

    Stop by instruction count, never by an `until` address: with the exit address at the fetch
    target, Unicorn probes the byte before it and reports that as the fault address. A fetch is
    complete when the CPU arrives at its target: Unicorn's count limit stops the run at the start
    of the next instruction only after it has translated the block there, i.e. after the fetch
    at the target passed the MMU (a forbidden fetch raises cause 12 first). Nothing at the target
    is executed, so its contents do not matter (zeros in the text page, stale data frames).
    Executing one more instruction there (a placed nop) made the CPU report faults the catalogue
    instruction never caused: an illegal-instruction exception where no nop could be placed
    (the target in the text page), and a fetch fault on the next page after a nop in a page's
    last word.
    """
    return len(insn.encoding) // 4


def canonical_sv39(va: int) -> bool:
    """Sv39: bits 63..39 must equal bit 38, or the access page-faults."""
    top = va >> 38
    return top == 0 or top == (1 << 26) - 1


def sstatus_for(user: bool, sum_bit: bool) -> int:
    return SR_SPIE | (0 if user else SR_SPP) | (SR_SUM if sum_bit and not user else 0)


def leaf_bits(p: Pte) -> int:
    """Linux riscv's PTE layout for the arch-neutral Pte (arch/riscv/include/asm/pgtable-bits.h).

    present: V|R (+W, X, U, A, D); the core Pte has no read bit, and every present Linux user
    mapping the core builds is readable, so R is always set (an execute-only PAGE_EXEC entry
    cannot be expressed by harness.kernel.mm.Pte). protnone: _PAGE_PROT_NONE is _PAGE_READ with
    V clear. swap/hwpoison: V clear, a swap entry in the upper bits. rsvd: W without R, the
    encoding the privileged spec reserves (it page-faults like an invalid entry).
    """
    if p.state == "protnone":
        return PTE_R
    if p.state in ("swap", "hwpoison"):
        return 0x1234 << 10
    bits = PTE_V | PTE_R
    if p.write:
        bits |= PTE_W
    if p.exec:
        bits |= PTE_X
    if p.user:
        bits |= PTE_U
    if p.young:
        bits |= PTE_A
    if p.dirty:
        bits |= PTE_D
    if p.rsvd:
        bits &= ~PTE_R
        bits |= PTE_W
    return bits


class _Base:
    """Shared per-run register setup and result construction."""

    def _regs(self, run: CpuRun, insn: Instruction) -> tuple[int, int]:
        text = LAYOUT.user_text if run.mode == "user" else LAYOUT.kernel_text
        return text, effective_address(insn, run.addr, run.sp)

    @staticmethod
    def _fault(run: CpuRun, insn: Instruction, cause: int, stval: int, sepc: int) -> RiscvFault:
        user = run.mode == "user"
        return RiscvFault(pc=sepc, insn=insn.encoding, user=user, scause=cause, stval=stval,
                          sepc=sepc, sstatus=sstatus_for(user, run.features.get("sum", False)),
                          sp=run.sp)


class RiscvMmuCpu(_Base):
    """Sv39 walked by the emulated MMU; one Uc for the life of the object."""

    fidelity = "mmu"
    RAM = 16 << 20
    TABLES = 0x100000       # page-table pages are allocated from here
    DATA = 0x400000         # data frames, one per mapped virtual page
    CODE = 0x40000          # one code frame per catalogue instruction

    def __init__(self) -> None:
        uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        uc.ctl_set_tlb_mode(UC_TLB_CPU)
        uc.mem_map(0, self.RAM, UC_PROT_ALL)
        self.uc = uc
        self.code_frame: dict[str, int] = {}
        for n, name in enumerate(CATALOGUE):
            frame = self.CODE + n * PAGE
            uc.mem_write(frame, CATALOGUE[name].encoding)
            self.code_frame[name] = frame
        self._hit: tuple[int, int] | None = None
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.reg_write(UC_RISCV_REG_PRIV, 3)
        self.clean = uc.context_save()
        self._ctx = uc.context_save()
        self._used_tables: list[int] = []
        self.stval_offset = self._calibrate()

    def _on_intr(self, uc: Uc, intno: int, _data: object) -> None:
        self._hit = (intno, uc.reg_read(UC_RISCV_REG_PC))
        uc.emu_stop()

    # -- page tables ---------------------------------------------------------------------------
    def _build(self, ptes: Mapping[int, Pte], insn: str) -> int:
        uc = self.uc
        zero = bytes(PAGE)
        for t in self._used_tables:
            uc.mem_write(t, zero)
        self._used_tables = []
        nxt = [self.TABLES]

        def alloc() -> int:
            t = nxt[0]
            nxt[0] += PAGE
            self._used_tables.append(t)
            return t

        root = alloc()
        tables: dict[tuple[int, int], int] = {}

        def leaf(va: int, pa: int, bits: int) -> None:
            vpn = [(va >> 12) & 0x1FF, (va >> 21) & 0x1FF, (va >> 30) & 0x1FF]
            t = root
            for level, idx in ((2, vpn[2]), (1, vpn[1])):
                key = (level, va >> (12 + 9 * level))
                if key not in tables:
                    tables[key] = alloc()
                    uc.mem_write(t + idx * 8, (((tables[key] >> 12) << 10) | PTE_V).to_bytes(8, "little"))
                t = tables[key]
            uc.mem_write(t + vpn[0] * 8, (((pa >> 12) << 10) | bits).to_bytes(8, "little"))

        frame = self.DATA
        for va, pte in sorted(ptes.items()):
            if not canonical_sv39(va) or va == LAYOUT.user_text:
                continue
            leaf(va, frame, leaf_bits(pte))
            frame += PAGE
        ut = ptes.get(LAYOUT.user_text)
        if ut is not None:
            leaf(LAYOUT.user_text, self.code_frame[insn], leaf_bits(ut))
        # init_mm's kernel text: global, supervisor, read+exec.
        leaf(LAYOUT.kernel_text, self.code_frame[insn], PTE_V | PTE_R | PTE_X | PTE_G | PTE_A | PTE_D)
        return root

    def _calibrate(self) -> int:
        """Find env->badaddr in the context blob: two stores to unmapped addresses below sp (so
        no register holds the faulting address itself)."""
        found: set[int] | None = None
        for probe in (0x3A5A5A5120, 0x1C3C3C3458):
            run = CpuRun("sd_ra_sp_m8", "kernel", 0, probe + 8, {}, {})
            self._execute(run)
            blob = bytes(self.uc.context_save())
            hits = {i for i in range(0, len(blob) - 7, 8) if int.from_bytes(blob[i:i + 8], "little") == probe}
            found = hits if found is None else found & hits
        if not found or len(found) != 1:
            raise RuntimeError(f"riscv64: cannot calibrate stval in the Unicorn context ({found})")
        return found.pop()

    def _execute(self, run: CpuRun) -> tuple[int, int] | None:
        uc = self.uc
        insn = CATALOGUE[run.insn]
        text, ea = self._regs(run, insn)
        uc.context_restore(self.clean)
        root = self._build(run.ptes, run.insn)
        user = run.mode == "user"
        uc.reg_write(UC_RISCV_REG_MSTATUS, SR_SUM if run.features.get("sum", False) and not user else 0)
        uc.reg_write(UC_RISCV_REG_SATP, SATP_MODE_SV39 | (root >> 12))
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        uc.reg_write(UC_RISCV_REG_A0, run.addr if insn.name in _SP_RELATIVE else ea)
        uc.reg_write(UC_RISCV_REG_A1, 0x1111)
        uc.reg_write(UC_RISCV_REG_A2, 0x2222)
        uc.reg_write(UC_RISCV_REG_RA, text + 0x100)
        uc.reg_write(UC_RISCV_REG_S0, 0x5050)
        uc.reg_write(UC_RISCV_REG_SP, run.sp)
        uc.reg_write(UC_RISCV_REG_PRIV, 0 if user else 1)  # last: no CSR access once in U
        self._hit = None
        count = _instruction_count(insn)
        try:
            uc.emu_start(text, text + 0xF00, count=count)
        except UcError as e:
            raise RuntimeError(f"riscv64 mmu: {run.insn} {run.mode} addr={run.addr:#x}: {e}") from None
        return self._hit

    def execute(self, run: CpuRun) -> RiscvFault | None:
        hit = self._execute(run)
        if hit is None:
            return None
        cause, hook_pc = hit
        insn = CATALOGUE[run.insn]
        if cause not in PAGE_FAULT_CAUSES:
            raise RuntimeError(f"riscv64 mmu: {run.insn} raised exception {cause}, not a page fault")
        self.uc.context_update(self._ctx)
        blob = ctypes.string_at(self._ctx.context, self.stval_offset + 8)
        stval = int.from_bytes(blob[self.stval_offset:], "little")
        sepc = (hook_pc - 4) % (1 << 64)
        if cause == EXC_LOAD_PAGE_FAULT and _faulting_part(insn, sepc - (LAYOUT.user_text if run.mode == "user"
                                                                          else LAYOUT.kernel_text)) == "rmw":
            # QEMU's AMO helpers probe the page for a load before the store, so an AMO on a page
            # it may not read comes out as cause 13. The ISA says otherwise (unprivileged spec,
            # "A" extension, and the privileged spec's exception table: AMOs raise store/AMO
            # page faults, cause 15, never load page faults); the fault is real, its cause is
            # corrected to what the hardware reports.
            cause = EXC_STORE_PAGE_FAULT
        return self._fault(run, insn, cause, stval, sepc)


class RiscvHookedCpu(_Base):
    """Flat memory: each page the kernel maps gets the Unicorn permissions the Sv39 rules give
    it for the mode (U pages only with SUM for S-mode data accesses, never for S-mode fetches;
    S pages never for U mode; invalid, PROT_NONE and reserved-encoding entries unmapped). The
    memory hook's address is stval; the cause is the one the privileged spec assigns to the
    access kind of the instruction that faulted (12 fetch, 13 load and LR, 15 store, SC, AMO)."""

    fidelity = "hooked"
    CODE = 0x40000

    def __init__(self) -> None:
        uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        self.uc = uc
        self._mapped: list[int] = []
        self._hit: tuple[int, int] | None = None
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_invalid)
        self.clean = uc.context_save()

    def _on_invalid(self, uc: Uc, access: int, address: int, size: int, value: int, _d: object) -> bool:
        self._hit = (access, address)
        return False

    @staticmethod
    def _perms(pte: Pte, user: bool, sum_bit: bool) -> int:
        if not pte.present or pte.rsvd:
            return UC_PROT_NONE
        if user and not pte.user:
            return UC_PROT_NONE
        perms = UC_PROT_READ | (UC_PROT_WRITE if pte.write else 0)
        if not user and pte.user:
            return perms if sum_bit else UC_PROT_NONE  # S-mode never executes a U page
        return perms | (UC_PROT_EXEC if pte.exec else 0)

    def execute(self, run: CpuRun) -> RiscvFault | None:
        uc = self.uc
        insn = CATALOGUE[run.insn]
        text, ea = self._regs(run, insn)
        user = run.mode == "user"
        sum_bit = run.features.get("sum", False)
        for page in self._mapped:
            uc.mem_unmap(page, PAGE)
        self._mapped = []
        pages: dict[int, int] = {}
        for va, pte in run.ptes.items():
            if canonical_sv39(va) and va != LAYOUT.user_text:
                perms = self._perms(pte, user, sum_bit)
                if perms != UC_PROT_NONE:
                    pages[va] = perms
        ut = run.ptes.get(LAYOUT.user_text)
        if user and ut is not None and self._perms(ut, True, False) & UC_PROT_EXEC:
            pages[LAYOUT.user_text] = UC_PROT_READ | UC_PROT_EXEC
        if not user:
            pages[LAYOUT.kernel_text] = UC_PROT_READ | UC_PROT_EXEC
        for va, perms in pages.items():
            uc.mem_map(va, PAGE, perms)
            self._mapped.append(va)
        if text in pages:
            uc.mem_write(text, insn.encoding)
        uc.context_restore(self.clean)
        uc.reg_write(UC_RISCV_REG_A0, run.addr if insn.name in _SP_RELATIVE else ea)
        uc.reg_write(UC_RISCV_REG_A1, 0x1111)
        uc.reg_write(UC_RISCV_REG_A2, 0x2222)
        uc.reg_write(UC_RISCV_REG_RA, text + 0x100)
        uc.reg_write(UC_RISCV_REG_S0, 0x5050)
        uc.reg_write(UC_RISCV_REG_SP, run.sp)
        self._hit = None
        count = _instruction_count(insn)
        try:
            uc.emu_start(text, text + 0xF00, count=count)
        except UcError:
            if self._hit is None:
                raise
        if self._hit is None:
            return None
        kind, address = self._hit
        pc = uc.reg_read(UC_RISCV_REG_PC)
        if kind in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT):
            return self._fault(run, insn, EXC_INST_PAGE_FAULT, address, address)
        cause = EXC_LOAD_PAGE_FAULT if _faulting_part(insn, pc - text) == "read" else EXC_STORE_PAGE_FAULT
        if address & ~(PAGE - 1) != ea & ~(PAGE - 1):
            # A misaligned access crossing into a page it may not use: stval is the first byte
            # of the faulting portion (privileged spec, stval), which is that page's start;
            # Unicorn's flat-memory slow path reports the last byte it tried.
            address &= ~(PAGE - 1)
        return self._fault(run, insn, cause, address, pc)
