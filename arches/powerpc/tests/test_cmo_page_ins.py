"""CMO hypervisor page-in accounting (lppaca.page_ins, CONFIG_PPC_SMLPAR with FW_FEATURE_CMO):
the legacy model and the conversion against v4.0 arch/powerpc/mm/fault.c.

v4.0 facts used (fault.c):
  * L431-441: a handle_mm_fault() result with VM_FAULT_SIGSEGV goes to bad_area; any other
    RETRY/ERROR result goes through mm_fault_error(), and `rc >= MM_FAULT_RETURN` jumps to bail,
    past the accounting block.
  * mm_fault_error() L155-166: a pending fatal signal returns MM_FAULT_RETURN (user) or
    MM_FAULT_ERR(SIGKILL) (kernel); L174-185: OOM returns MM_FAULT_RETURN (user, after
    pagefault_out_of_memory()) or SIGKILL (kernel); L187-188 SIGBUS goes to do_sigbus().
  * L447-466: only then, on the first attempt, VM_FAULT_MAJOR does maj_flt++, the MAJ perf event
    and, under CMO, page_ins += 1 << PAGE_FACTOR (PAGE_FACTOR = PAGE_SHIFT - 12 = 0 for 4K pages).
    page_ins therefore moves exactly when maj_flt does.
  * An access error (L375-424, `goto bad_area`) never reaches handle_mm_fault().
"""

import pytest

from arches.powerpc import PARAMS_PPC64, convert, legacy
from arches.powerpc.cpu import PpcFault
from harness.diff import Differ
from harness.generic import load_variant
from harness.kernel import Kernel, KernelConfig, MmStruct, Task, Vma
from harness.kernel.constants import (VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_SIGBUS,
                                      VM_FAULT_SIGSEGV, VM_READ, VM_WRITE)
from harness.scenario import Scenario

P64 = PARAMS_PPC64
CMO = legacy.CMO_COUNTER
BASE = 0x20000000
USER_NIP = 0x10000008
DSISR_LOAD_NOTPRESENT = 0x40000000   # DSISR_NOHPTE, a load
DSISR_STORE_NOTPRESENT = 0x42000000  # DSISR_NOHPTE | DSISR_ISSTORE
PAGE_INS_PER_MAJOR = 1 << (12 - 12)  # 1 << PAGE_FACTOR with 4K pages (L460)


def world(flags=VM_READ | VM_WRITE, *, inject=(), fatal=False, cmo=True):
    mm = MmStruct([Vma(BASE, BASE + 0x10000, flags, None, BASE >> 12)], {})
    return Kernel(mm, Task(fatal_signal=fatal), KernelConfig(P64.task_size), inject=tuple(inject),
                  features={"cmo": cmo}, extable=frozenset({0xC000000000008000}))


def dsi(dsisr, *, user=True):
    nip = USER_NIP if user else 0xC000000000008000
    return PpcFault(pc=nip, insn=b"\x90\x83\x00\x00", user=user, trap=0x300, dsisr=dsisr, dar=BASE,
                    srr1=0, nip=nip, gpr1=BASE + 0x10000, msr=0)


def run_legacy(k, regs):
    legacy.handle_page_fault(k, P64, regs)
    return k


def run_converted(variant):
    handler = load_variant(variant).handler

    def run(k, regs):
        convert.converted_handle_page_fault(k, P64, regs, handler)
        return k
    return run


RUNNERS = {"legacy": run_legacy, "fixed": run_converted("fixed"), "rfc2015": run_converted("rfc2015")}

# (case, vma flags, injections, fatal signal, user, dsisr, expected (maj_flt, page_ins))
CASES = [
    # L447-466: a completed major fault bumps maj_flt and page_ins together.
    ("major_completes", VM_READ | VM_WRITE, [VM_FAULT_MAJOR], False, True, DSISR_LOAD_NOTPRESENT,
     (1, PAGE_INS_PER_MAJOR)),
    # L174-185: user OOM -> pagefault_out_of_memory(), MM_FAULT_RETURN, bail: nothing accounted,
    # although the result carried VM_FAULT_MAJOR.
    ("oom_user_major", VM_READ | VM_WRITE, [VM_FAULT_OOM | VM_FAULT_MAJOR], False, True,
     DSISR_LOAD_NOTPRESENT, (0, 0)),
    # L155-163: fatal signal pending -> MM_FAULT_RETURN before the OOM test.
    ("fatal_signal_user_oom_major", VM_READ | VM_WRITE, [VM_FAULT_OOM | VM_FAULT_MAJOR], True, True,
     DSISR_LOAD_NOTPRESENT, (0, 0)),
    # L187-188: SIGBUS -> do_sigbus -> MM_FAULT_RETURN.
    ("sigbus_major", VM_READ | VM_WRITE, [VM_FAULT_SIGBUS | VM_FAULT_MAJOR], False, True,
     DSISR_LOAD_NOTPRESENT, (0, 0)),
    # L433: VM_FAULT_SIGSEGV -> bad_area.
    ("sigsegv_major", VM_READ | VM_WRITE, [VM_FAULT_SIGSEGV | VM_FAULT_MAJOR], False, True,
     DSISR_LOAD_NOTPRESENT, (0, 0)),
    # L409-411: a store to a !VM_WRITE vma is a bad access; handle_mm_fault is never called.
    ("bad_access", VM_READ, [VM_FAULT_MAJOR], False, True, DSISR_STORE_NOTPRESENT, (0, 0)),
    # L181-182: kernel OOM -> SIGKILL to bad_page_fault (fixed up by the exception table).
    ("oom_kernel_major", VM_READ | VM_WRITE, [VM_FAULT_OOM | VM_FAULT_MAJOR], False, False,
     DSISR_LOAD_NOTPRESENT, (0, 0)),
]


@pytest.mark.parametrize("side", sorted(RUNNERS))
@pytest.mark.parametrize("case,flags,inject,fatal,user,dsisr,expected", CASES, ids=[c[0] for c in CASES])
def test_page_ins_moves_with_maj_flt(side, case, flags, inject, fatal, user, dsisr, expected):
    k = RUNNERS[side](world(flags, inject=inject, fatal=fatal), dsi(dsisr, user=user))
    assert (k.task.maj_flt, k.perf.get(CMO, 0)) == expected


@pytest.mark.parametrize("side", sorted(RUNNERS))
def test_no_page_ins_without_cmo(side):
    # L455: firmware_has_feature(FW_FEATURE_CMO) gates the page_ins update; maj_flt still moves.
    k = RUNNERS[side](world(inject=[VM_FAULT_MAJOR], cmo=False), dsi(DSISR_LOAD_NOTPRESENT))
    assert (k.task.maj_flt, k.perf.get(CMO, 0)) == (1, 0)


def _scenario(inject):
    return Scenario.from_json({
        "format": "pfdiff/1", "arch": "ppc64", "mode": "user", "insn": "lbz", "addr": hex(BASE + 8),
        "sp": hex(BASE + 0x20000),
        "vmas": [{"start": hex(BASE), "end": hex(BASE + 0x4000), "flags": ["VM_READ", "VM_WRITE"]}],
        "ptes": [], "task": {}, "cpu": {"cmo": True}, "inject": inject})


@pytest.mark.parametrize("inject", [
    [["VM_FAULT_OOM", "VM_FAULT_MAJOR"]],                        # user OOM, then the refault completes
    [["VM_FAULT_OOM", "VM_FAULT_MAJOR"], ["VM_FAULT_OOM"]],      # two OOM faults, then a minor one
    [["VM_FAULT_OOM", "VM_FAULT_MAJOR"], ["VM_FAULT_MAJOR"]],    # OOM, then a major fault: 1 page_in
], ids=["oom-then-minor", "oom-oom-then-minor", "oom-then-major"])
def test_repeated_faults_page_ins_match_under_fixed(inject):
    """The hunt's reproducers (ppc64 fixed, seeds 7-9): after a user OOM the conversion counted
    a page_in from the VM_FAULT_MAJOR left in generic_page_fault()'s return value."""
    s = _scenario(inject)
    r = Differ(load_variant("fixed")).run(s)
    assert r.divergence is None, r.divergence
    expected = PAGE_INS_PER_MAJOR if ["VM_FAULT_MAJOR"] in inject else 0
    assert dict(r.legacy.perf).get(CMO, 0) == expected
    assert dict(r.generic.perf).get(CMO, 0) == expected
