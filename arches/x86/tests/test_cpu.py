"""Tests for arches/x86/cpu.py: encodings (capstone), SDM error codes per fault class, no invented
faults, and the mmu-vs-hooked cross-check on x86_64.

Expected error codes are written by hand from the Intel SDM vol. 3A §4.7 ("Page-Fault
Exceptions"): bit 0 P = 0 for a non-present page, 1 for a protection or reserved-bit violation;
bit 1 W/R = the access was a write; bit 2 U/S = CPL 3; bit 3 RSVD = a reserved bit was set;
bit 4 I/D = an instruction fetch, only when IA32_EFER.NXE=1 (with PAE/4-level paging) or
CR4.SMEP=1. Access rights follow §4.6 with CR0.WP=1.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import capstone
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from arches.x86.cpu import (CATALOGUE_I386, CATALOGUE_X86_64, LAYOUT_I386, LAYOUT_X86_64,  # noqa: E402
                            UnsupportedRun, X86Cpu, X86Fault, owned_pages)
from harness.arch import CpuRun  # noqa: E402
from harness.kernel.mm import Pte  # noqa: E402

# -- (a) encodings --------------------------------------------------------------------------------

# Hand-written capstone renderings; `None` for call rel32 (its operand is the absolute target).
# capstone prints enter's imm16 0xffff as -1.
DISASM_64 = {
    "load8": ("mov", "al, byte ptr [rax]"), "load16": ("mov", "ax, word ptr [rax]"),
    "load32": ("mov", "eax, dword ptr [rax]"), "load64": ("mov", "rax, qword ptr [rax]"),
    "store8": ("mov", "byte ptr [rax], cl"), "store16": ("mov", "word ptr [rax], cx"),
    "store32": ("mov", "dword ptr [rax], ecx"), "store64": ("mov", "qword ptr [rax], rcx"),
    "add": ("add", "dword ptr [rax], ecx"), "xchg": ("xchg", "dword ptr [rax], ecx"),
    "lock_cmpxchg": ("lock cmpxchg", "dword ptr [rax], ecx"), "inc": ("inc", "dword ptr [rax]"),
    "push": ("push", "rcx"), "call": ("call", None), "enter": ("enter", "-1, 0"),
    "jmp_reg": ("jmp", "rax"), "call_reg": ("call", "rax"),
    "rep_movsb": ("rep movsb", "byte ptr [rdi], byte ptr [rsi]"),
    "rep_stosb": ("rep stosb", "byte ptr [rdi], al"),
    "rep_movsb_load": ("rep movsb", "byte ptr [rdi], byte ptr [rsi]"),
}
DISASM_32 = {
    "load8": ("mov", "al, byte ptr [eax]"), "load16": ("mov", "ax, word ptr [eax]"),
    "load32": ("mov", "eax, dword ptr [eax]"),
    "store8": ("mov", "byte ptr [eax], cl"), "store16": ("mov", "word ptr [eax], cx"),
    "store32": ("mov", "dword ptr [eax], ecx"),
    "add": ("add", "dword ptr [eax], ecx"), "xchg": ("xchg", "dword ptr [eax], ecx"),
    "lock_cmpxchg": ("lock cmpxchg", "dword ptr [eax], ecx"), "inc": ("inc", "dword ptr [eax]"),
    "push": ("push", "ecx"), "call": ("call", None), "enter": ("enter", "-1, 0"), "pusha": ("pushal", ""),
    "jmp_reg": ("jmp", "eax"), "call_reg": ("call", "eax"),
    "rep_movsb": ("rep movsb", "byte ptr es:[edi], byte ptr [esi]"),
    "rep_stosb": ("rep stosb", "byte ptr es:[edi], al"),
    "rep_movsb_load": ("rep movsb", "byte ptr es:[edi], byte ptr [esi]"),
}


@pytest.mark.parametrize("catalogue,expect,mode", [
    (CATALOGUE_X86_64, DISASM_64, capstone.CS_MODE_64), (CATALOGUE_I386, DISASM_32, capstone.CS_MODE_32)])
def test_encodings_disassemble_as_intended(catalogue, expect, mode):
    assert set(catalogue) == set(expect)
    md = capstone.Cs(capstone.CS_ARCH_X86, mode)
    for name, insn in catalogue.items():
        got = list(md.disasm(insn.encoding, 0x1000))
        assert len(got) == 1 and got[0].size == len(insn.encoding), name
        mnemonic, ops = expect[name]
        assert got[0].mnemonic == mnemonic, name
        if ops is None:   # call rel32 0: the target is the next instruction
            assert int(got[0].op_str, 16) == 0x1000 + len(insn.encoding), name
        else:
            assert got[0].op_str == ops, name


def test_mmu_helper_stubs_disassemble():
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    from arches.x86 import cpu
    assert [(i.mnemonic, i.op_str) for i in md.disasm(cpu._SYSRETQ, 0)] == [("sysretq", "")]
    assert [(i.mnemonic, i.op_str) for i in md.disasm(cpu._USER_PROLOGUE, 0)] == [("mov", "rcx, r12"), ("jmp", "r13")]


def test_catalogue_shape():
    assert "load64" in CATALOGUE_X86_64 and "load64" not in CATALOGUE_I386
    assert "pusha" in CATALOGUE_I386 and "pusha" not in CATALOGUE_X86_64
    for cat in (CATALOGUE_X86_64, CATALOGUE_I386):
        for name, insn in cat.items():
            assert insn.name == name and insn.access in ("read", "write", "rmw", "fetch")


# -- fixtures -------------------------------------------------------------------------------------

CONFIGS = [("x86_64", "mmu"), ("x86_64", "hooked"), ("i386", "hooked")]
_cpus: dict[tuple[str, str], X86Cpu] = {}


def cpu_for(variant: str, fidelity: str) -> X86Cpu:
    key = (variant, fidelity)
    if key not in _cpus:
        _cpus[key] = X86Cpu(variant, fidelity)   # one long-lived instance per config, as in use
    return _cpus[key]


class Env:
    """Addresses per variant: a user data page D (with D-PAGE free below it), a user stack top SP
    (stack page SP-PAGE), a kernel data page K, the word size and Linux's CS values."""

    def __init__(self, variant: str):
        if variant == "x86_64":
            self.D, self.SP, self.K, self.W = 0x600000, 0x7FFFFFFFF000, 0xFFFF880000001000, 8
            self.UCS, self.KCS, self.layout = 0x33, 0x10, LAYOUT_X86_64
        else:
            self.D, self.SP, self.K, self.W = 0x0A000000, 0xBFFFF000, 0xC8000000, 4
            self.UCS, self.KCS, self.layout = 0x73, 0x60, LAYOUT_I386
        self.S = self.SP - 0x1000   # the stack page


def run(variant, fidelity, insn, mode, addr, sp, ptes, **features) -> X86Fault | None:
    return cpu_for(variant, fidelity).execute(CpuRun(insn, mode, addr, sp, ptes, features))


RW = Pte(write=True, dirty=True)
RO = Pte()
RWX = Pte(write=True, exec=True, dirty=True)
KRW = Pte(write=True, user=False, dirty=True)
KRX = Pte(user=False, exec=True)


def check_fault(f, e: Env, mode, code, cr2, *, ip=None, sp=None, insn=None, flags=0x202, variant="x86_64"):
    assert f is not None, "expected a #PF"
    assert f.error_code == code, f"error code {f.error_code:#x} != {code:#x}"
    assert f.cr2 == cr2, f"cr2 {f.cr2:#x} != {cr2:#x}"
    text = e.layout.user_text if mode == "user" else e.layout.kernel_text
    if ip is None:   # a data fault: ip is the catalogue instruction in the mode's text page
        assert text <= f.ip < text + 0x1000
        assert f.insn == insn
    else:            # a fetch fault: ip is the target and the kernel cannot read its bytes
        assert f.ip == ip and f.insn == b""
    assert f.pc == f.ip
    assert f.user == (mode == "user")
    assert f.cs == (e.UCS if mode == "user" else e.KCS)
    assert f.flags == flags
    assert f.sp == (e.SP if sp is None else sp)


# -- (b) SDM error codes per instruction and fault class ------------------------------------------

DATA_LOADS = {"x86_64": ["load8", "load16", "load32", "load64"], "i386": ["load8", "load16", "load32"]}
DATA_STORES = {"x86_64": ["store8", "store16", "store32", "store64"], "i386": ["store8", "store16", "store32"]}
RMW = ["add", "xchg", "lock_cmpxchg", "inc"]


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_data_accesses_user(variant, fidelity):
    e = Env(variant)
    cat = CATALOGUE_X86_64 if variant == "x86_64" else CATALOGUE_I386
    for name in DATA_LOADS[variant]:
        enc = cat[name].encoding
        # not present, user read: P=0 W=0 U=1
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {}), e, "user", 0x4, e.D, insn=enc)
        # swap / hwpoison / protnone entries are not present to the CPU
        for st in ("swap", "hwpoison", "protnone"):
            check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {e.D: Pte(state=st)}), e, "user", 0x4, e.D, insn=enc)
        # user read of a supervisor page: protection, P=1 U=1
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {e.D: KRW}), e, "user", 0x5, e.D, insn=enc)
    for name in DATA_STORES[variant]:
        enc = cat[name].encoding
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {}), e, "user", 0x6, e.D, insn=enc)
        # user write to a read-only user page: P=1 W=1 U=1
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {e.D: RO}), e, "user", 0x7, e.D, insn=enc)
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {e.D: KRW}), e, "user", 0x7, e.D, insn=enc)
    for name in RMW:
        enc = cat[name].encoding
        # Unicorn (QEMU TCG, non-parallel) performs the read of an RMW first, so a not-present
        # page faults as a read (0x4); real CPUs may report the write intent. Documented in cpu.py.
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {}), e, "user", 0x4, e.D, insn=enc)
        # the read succeeds on a read-only page; the write faults: P=1 W=1 U=1
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {e.D: RO}), e, "user", 0x7, e.D, insn=enc)


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_data_accesses_kernel(variant, fidelity):
    e = Env(variant)
    cat = CATALOGUE_X86_64 if variant == "x86_64" else CATALOGUE_I386
    enc_l, enc_s = cat["load32"].encoding, cat["store32"].encoding
    kw = dict(insn=enc_l)
    # supervisor read, not present: all bits 0
    check_fault(run(variant, fidelity, "load32", "kernel", e.D, e.SP, {}), e, "kernel", 0x0, e.D, **kw)
    check_fault(run(variant, fidelity, "load32", "kernel", e.K, e.SP, {}), e, "kernel", 0x0, e.K, **kw)
    # supervisor write, not present: W=1
    check_fault(run(variant, fidelity, "store32", "kernel", e.D, e.SP, {}), e, "kernel", 0x2, e.D, insn=enc_s)
    # supervisor write to a read-only page with CR0.WP=1: P=1 W=1
    check_fault(run(variant, fidelity, "store32", "kernel", e.D, e.SP, {e.D: RO}), e, "kernel", 0x3, e.D, insn=enc_s)
    check_fault(run(variant, fidelity, "store32", "kernel", e.K, e.SP, {e.K: Pte(user=False)}), e, "kernel", 0x3,
                e.K, insn=enc_s)
    # SMAP (§4.6.1): supervisor data access to a user page with EFLAGS.AC=0: protection, P=1
    check_fault(run(variant, fidelity, "load32", "kernel", e.D, e.SP, {e.D: RW}, smap=True), e, "kernel", 0x1, e.D, **kw)
    check_fault(run(variant, fidelity, "store32", "kernel", e.D, e.SP, {e.D: RW}, smap=True), e, "kernel", 0x3, e.D,
                insn=enc_s)
    # ... with EFLAGS.AC=1 SMAP does not apply: the access completes
    assert run(variant, fidelity, "load32", "kernel", e.D, e.SP, {e.D: RW}, smap=True, ac=True) is None
    # WP=1 still applies with AC=1; flags carries AC (0x40000 | IF 0x200 | bit 1)
    check_fault(run(variant, fidelity, "store32", "kernel", e.D, e.SP, {e.D: RO}, smap=True, ac=True), e, "kernel",
                0x3, e.D, insn=enc_s, flags=0x40202)
    # copy_to_user / clear_user: stores from addr-8 cross into addr's page (not present: W=1)
    for name in ("rep_movsb", "rep_stosb"):
        check_fault(run(variant, fidelity, name, "kernel", e.D, e.SP, {e.D - 0x1000: RW}), e, "kernel", 0x2, e.D,
                    insn=cat[name].encoding)
        check_fault(run(variant, fidelity, name, "kernel", e.D, e.SP, {e.D - 0x1000: RW, e.D: RO}), e, "kernel", 0x3,
                    e.D, insn=cat[name].encoding)
    # copy_from_user: loads from addr-8; not present at addr: 0x0
    enc_m = cat["rep_movsb_load"].encoding
    check_fault(run(variant, fidelity, "rep_movsb_load", "kernel", e.D, e.SP, {e.D - 0x1000: RW}), e, "kernel", 0x0,
                e.D, insn=enc_m)
    # ... under SMAP the very first byte (addr-8, a user page) faults: P=1
    check_fault(run(variant, fidelity, "rep_movsb_load", "kernel", e.D, e.SP, {e.D - 0x1000: RW, e.D: RW}, smap=True),
                e, "kernel", 0x1, e.D - 8, insn=enc_m)


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_stack_pushes(variant, fidelity):
    e = Env(variant)
    cat = CATALOGUE_X86_64 if variant == "x86_64" else CATALOGUE_I386
    for name in ("push", "call", "enter"):
        enc = cat[name].encoding
        # the first store is at sp - word; not present: W=1 U=1; read-only: P=1 W=1 U=1
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {}), e, "user", 0x6, e.SP - e.W, insn=enc)
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {e.S: RO}), e, "user", 0x7, e.SP - e.W, insn=enc)
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP, {e.S: KRW}), e, "user", 0x7, e.SP - e.W, insn=enc)
        assert run(variant, fidelity, name, "user", e.D, e.SP, {e.S: RW}) is None
        # sp in the middle of a page: a push at sp-word straddling nothing faults at sp-word
        check_fault(run(variant, fidelity, name, "user", e.D, e.SP - 0x800, {}), e, "user", 0x6, e.SP - 0x800 - e.W,
                    insn=enc, sp=e.SP - 0x800)
    if variant == "i386":
        # pusha: QEMU stores from esp-32 upwards, so the lowest address faults first
        enc = cat["pusha"].encoding
        check_fault(run(variant, fidelity, "pusha", "user", e.D, e.SP, {}), e, "user", 0x6, e.SP - 32, insn=enc)
        check_fault(run(variant, fidelity, "pusha", "user", e.D, e.SP, {e.S: RO}), e, "user", 0x7, e.SP - 32, insn=enc)
        assert run(variant, fidelity, "pusha", "user", e.D, e.SP, {e.S: RW}) is None


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_instruction_fetch(variant, fidelity):
    e = Env(variant)
    D = e.D + 0x10
    for name in ("jmp_reg", "call_reg"):
        st = {e.S: RW}
        # call pushes the return address before the target is fetched: sp at the fault is sp-word
        sp = e.SP - e.W if name == "call_reg" else e.SP
        kw = dict(ip=D, sp=sp)
        # NX (XD=1, EFER.NXE=1): P=1 U=1 I/D=1
        check_fault(run(variant, fidelity, name, "user", D, e.SP, {**st, e.D: RW}, nx=True), e, "user", 0x15, D, **kw)
        # not present: with NXE, I/D=1 (0x14); without NXE or SMEP, I/D=0 (0x4)
        check_fault(run(variant, fidelity, name, "user", D, e.SP, st, nx=True), e, "user", 0x14, D, **kw)
        check_fault(run(variant, fidelity, name, "user", D, e.SP, st), e, "user", 0x4, D, **kw)
        # user fetch from a supervisor page: P=1 U=1 (+I/D with NXE)
        check_fault(run(variant, fidelity, name, "user", D, e.SP, {**st, e.D: KRX}, nx=True), e, "user", 0x15, D, **kw)
        check_fault(run(variant, fidelity, name, "user", D, e.SP, {**st, e.D: KRX}), e, "user", 0x5, D, **kw)
        # without NXE every present user page is executable
        assert run(variant, fidelity, name, "user", D, e.SP, {**st, e.D: RW}) is None
        assert run(variant, fidelity, name, "user", D, e.SP, {**st, e.D: RWX}, nx=True) is None
        # the stack fault comes first for call
        if name == "call_reg":
            check_fault(run(variant, fidelity, name, "user", D, e.SP, {e.D: RWX}, nx=True), e, "user", 0x6, e.SP - e.W,
                        insn=CATALOGUE_X86_64[name].encoding)
    # kernel: SMEP (§4.6.1) forbids supervisor fetches from user pages: P=1 I/D=1 (I/D via SMEP
    # even without NXE)
    check_fault(run(variant, fidelity, "jmp_reg", "kernel", D, e.SP, {e.D: RWX}, nx=True, smep=True), e, "kernel", 0x11,
                D, ip=D)
    check_fault(run(variant, fidelity, "jmp_reg", "kernel", D, e.SP, {e.D: RWX}, smep=True), e, "kernel", 0x11, D, ip=D)
    assert run(variant, fidelity, "jmp_reg", "kernel", D, e.SP, {e.D: RWX}, nx=True) is None
    # kernel fetch from a non-executable kernel page: P=1 I/D=1
    check_fault(run(variant, fidelity, "jmp_reg", "kernel", e.K, e.SP, {e.K: KRW}, nx=True), e, "kernel", 0x11, e.K,
                ip=e.K)
    check_fault(run(variant, fidelity, "jmp_reg", "kernel", e.K, e.SP, {}), e, "kernel", 0x0, e.K, ip=e.K)
    # SMAP does not restrict fetches
    assert run(variant, fidelity, "jmp_reg", "kernel", D, e.SP, {e.D: RWX}, nx=True, smap=True) is None


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_reserved_bit(variant, fidelity):
    # RSVD=1 with P=1 for any access to a present entry with a reserved bit (x86_64: bit 51;
    # i386: only with PAE, which the CPU assumes with nx).
    e = Env(variant)
    cat = CATALOGUE_X86_64 if variant == "x86_64" else CATALOGUE_I386
    bad = Pte(write=True, exec=True, rsvd=True)
    check_fault(run(variant, fidelity, "load32", "user", e.D, e.SP, {e.D: bad}, nx=True), e, "user", 0xD, e.D,
                insn=cat["load32"].encoding)
    check_fault(run(variant, fidelity, "store32", "kernel", e.D, e.SP, {e.D: bad}, nx=True), e, "kernel", 0xB, e.D,
                insn=cat["store32"].encoding)
    check_fault(run(variant, fidelity, "jmp_reg", "user", e.D, e.SP, {e.D: bad}, nx=True), e, "user", 0x1D, e.D,
                ip=e.D)
    # a not-present entry's other bits are ignored (§4.7: P=0 wins)
    check_fault(run(variant, fidelity, "load32", "user", e.D, e.SP, {e.D: Pte(state="swap", rsvd=True)}, nx=True),
                e, "user", 0x4, e.D, insn=cat["load32"].encoding)


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_page_crossing(variant, fidelity):
    e = Env(variant)
    cat = CATALOGUE_X86_64 if variant == "x86_64" else CATALOGUE_I386
    a = e.D - 2   # a 4-byte access at D-2 spans D-PAGE and D
    # first page missing: CR2 is the access address
    check_fault(run(variant, fidelity, "load32", "user", a, e.SP, {e.D: RW}), e, "user", 0x4, a, insn=cat["load32"].encoding)
    # second page missing: CR2 is the first byte in that page (QEMU's split access)
    check_fault(run(variant, fidelity, "load32", "user", a, e.SP, {e.D - 0x1000: RW}), e, "user", 0x4, e.D,
                insn=cat["load32"].encoding)
    check_fault(run(variant, fidelity, "store32", "user", a, e.SP, {e.D - 0x1000: RW}), e, "user", 0x6, e.D,
                insn=cat["store32"].encoding)
    check_fault(run(variant, fidelity, "store32", "user", a, e.SP, {e.D - 0x1000: RW, e.D: RO}), e, "user", 0x7, e.D,
                insn=cat["store32"].encoding)
    check_fault(run(variant, fidelity, "add", "user", a, e.SP, {e.D - 0x1000: RW, e.D: RO}), e, "user", 0x7, e.D,
                insn=cat["add"].encoding)
    assert run(variant, fidelity, "store32", "user", a, e.SP, {e.D - 0x1000: RW, e.D: RW}) is None


# -- (c) permitted accesses never fault -----------------------------------------------------------

@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_permitted_accesses_complete(variant, fidelity):
    e = Env(variant)
    cat = CATALOGUE_X86_64 if variant == "x86_64" else CATALOGUE_I386
    full = {e.D - 0x1000: RWX, e.D: RWX, e.S: RW}
    for feats in ({}, {"nx": True}, {"nx": True, "smep": True}, {"nx": True, "smap": True, "ac": True}):
        for name, insn in cat.items():
            for mode in insn.modes:
                if mode == "kernel" and insn.access == "fetch" and feats.get("smep"):
                    continue   # SMEP forbids it by design
                assert run(variant, fidelity, name, mode, e.D, e.SP, full, **feats) is None, (name, mode, feats)
    # kernel pages for kernel mode, SMAP on
    kfull = {e.K - 0x1000: Pte(write=True, user=False, exec=True), e.K: Pte(write=True, user=False, exec=True)}
    for name, insn in cat.items():
        if "kernel" in insn.modes:
            assert run(variant, fidelity, name, "kernel", e.K, e.SP, kfull, nx=True, smep=True, smap=True) is None, name


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_state_does_not_leak_between_runs(variant, fidelity):
    # a fault, then a permitted run, then the fault again: same answers (stale TLB / TB / #DF)
    e = Env(variant)
    first = run(variant, fidelity, "store32", "user", e.D, e.SP, {e.D: RO})
    assert run(variant, fidelity, "store32", "user", e.D, e.SP, {e.D: RW}) is None
    assert run(variant, fidelity, "store32", "user", e.D, e.SP, {e.D: RO}) == first
    assert run(variant, fidelity, "jmp_reg", "user", e.D, e.SP, {e.D: RWX}, nx=True) is None
    assert run(variant, fidelity, "jmp_reg", "user", e.D, e.SP, {e.D: RW}, nx=True).error_code == 0x15
    assert run(variant, fidelity, "load32", "user", e.D, e.SP, {}).error_code == 0x4
    assert run(variant, fidelity, "load32", "user", e.D, e.SP, {e.D: RO}) is None


@pytest.mark.parametrize("variant,fidelity", CONFIGS)
def test_unsupported_runs_are_refused(variant, fidelity):
    e = Env(variant)
    with pytest.raises(UnsupportedRun):
        run(variant, fidelity, "load32", "user", e.layout.user_text + 4, e.SP, {})
    with pytest.raises(UnsupportedRun):
        run(variant, fidelity, "push", "kernel", e.D, e.SP, {})
    with pytest.raises(UnsupportedRun):
        run(variant, fidelity, "nope", "user", e.D, e.SP, {})
    if variant == "x86_64":
        with pytest.raises(UnsupportedRun):
            run(variant, fidelity, "load32", "user", 0x0000900000000000, e.SP, {})
    assert set(owned_pages(variant)) >= {e.layout.user_text, e.layout.kernel_text}


# -- (d) mmu and hooked agree ---------------------------------------------------------------------

def _scenarios(n: int, seed: int = 1):
    e = Env("x86_64")
    rng = random.Random(seed)
    ptes_pool = [None, RO, RW, RWX, KRW, KRX, Pte(state="swap"), Pte(state="protnone"), Pte(state="hwpoison"),
                 Pte(write=True, rsvd=True), Pte(young=False, dirty=False, write=True)]
    bases = [e.D, e.D - 2, e.D - 7, e.D + 0x10, e.D + 0xFFE, e.K, e.K - 3, 0x10000, 0x7FFFFFFFE000 - 1]
    sps = [e.SP, e.SP - 0x800, e.SP - 4, e.D + 4]
    feats = ["nx", "smep", "smap", "ac"]
    for _ in range(n):
        name = rng.choice(list(CATALOGUE_X86_64))
        insn = CATALOGUE_X86_64[name]
        mode = rng.choice(insn.modes)
        addr, sp = rng.choice(bases), rng.choice(sps)
        pages = {(addr - 8) & ~0xFFF, addr & ~0xFFF, (addr + 15) & ~0xFFF, (sp - 32) & ~0xFFF, (sp - 1) & ~0xFFF}
        ptes = {}
        for p in pages:
            choice = rng.choice(ptes_pool)
            if choice is not None:
                ptes[p] = choice
        f = {k: rng.random() < 0.5 for k in feats}
        yield CpuRun(name, mode, addr, sp, ptes, f)


def test_mmu_and_hooked_agree():
    mmu, hooked = cpu_for("x86_64", "mmu"), cpu_for("x86_64", "hooked")
    faults = 0
    for r in _scenarios(3000):
        a, b = mmu.execute(r), hooked.execute(r)
        assert a == b, (r, a, b)
        faults += a is not None
    assert faults > 1000   # the sample exercises faults, not only completions
