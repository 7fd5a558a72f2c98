"""handle_mm_fault() as mm/memory.c and mm/filemap.c v4.0 behave, for anonymous and file-backed
VMAs, swap and hwpoison entries, COW, the stack guard page and page locks, plus injected results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .constants import (FAULT_FLAG_ALLOW_RETRY, FAULT_FLAG_KILLABLE, FAULT_FLAG_RETRY_NOWAIT,
                        FAULT_FLAG_WRITE, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE,
                        VM_EXEC, VM_FAULT_ERROR, VM_FAULT_HWPOISON_LARGE, VM_FAULT_HWPOISON_LARGE_MASK,
                        VM_FAULT_NOPAGE, VM_FAULT_OOM, VM_FAULT_HWPOISON, VM_FAULT_LOCKED,
                        VM_FAULT_MAJOR, VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
                        VM_FAULT_WRITE, VM_GROWSDOWN, VM_READ, VM_SHARED, VM_WRITE)
from .mm import Pte, Vma

if TYPE_CHECKING:
    from .kernel import Kernel


def handle_mm_fault(k: "Kernel", vma: Vma, address: int, flags: int) -> int:
    """mm/memory.c v4.0 handle_mm_fault() (L3285) -> __handle_mm_fault() -> handle_pte_fault().

    An injection for this call (scenario `inject[i]`) stands in for what the core would return:
    with an error or RETRY bit it replaces the natural result and changes no page table (the
    allocation or I/O failed); otherwise (0 or MAJOR) the fault is handled naturally and the
    injected bits are ORed in. RETRY honours the core's contract: it exists only with
    ALLOW_RETRY, or on a killable lock with a fatal signal pending, and it drops mmap_sem unless
    RETRY_NOWAIT was set; an injected RETRY outside that contract is dropped. VM_FAULT_FALLBACK
    never leaves __handle_mm_fault() (it falls back to a small page, mm/memory.c L3218-3247), so
    an injected FALLBACK bit is dropped too, and so is anything else the core never returns:
    bits outside the v4.0 VM_FAULT_* set (VM_FAULT_ACCESS is the RFC's), the hwpoison index
    without VM_FAULT_HWPOISON_LARGE, error bits beside RETRY (filemap_fault() and
    do_swap_page() return RETRY with at most MAJOR), and all but the lowest of several error
    bits (every error path of the v4.0 core returns one: `return VM_FAULT_OOM;`, `ret =
    VM_FAULT_HWPOISON;`, ...).
    """
    k.count_vm_event("PGFAULT")
    injected = k.inject[k.injected] if k.injected < len(k.inject) else None
    k.injected += 1
    if injected is not None:
        injected = core_result(injected)
    if injected is not None and injected & (VM_FAULT_ERROR | VM_FAULT_RETRY):
        if injected & VM_FAULT_RETRY:
            if _retry_possible(k, flags):
                _drop_mmap_sem_for_retry(k, flags)
            else:
                injected &= ~VM_FAULT_RETRY
        k.call("inject", f"handle_mm_fault result {injected:#x}")
        return injected
    ret = handle_pte_fault(k, vma, address, flags)
    if injected:
        k.call("inject", f"or {injected:#x}")
        ret |= injected
    return ret


V40_RESULT_BITS = (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_MAJOR | VM_FAULT_WRITE | VM_FAULT_HWPOISON
                   | VM_FAULT_HWPOISON_LARGE | VM_FAULT_SIGSEGV | VM_FAULT_NOPAGE | VM_FAULT_LOCKED
                   | VM_FAULT_RETRY)


def core_result(value: int) -> int:
    """The nearest result handle_mm_fault() can really return (see handle_mm_fault's docstring)."""
    hindex = value & VM_FAULT_HWPOISON_LARGE_MASK if value & VM_FAULT_HWPOISON_LARGE else 0
    value &= V40_RESULT_BITS
    if value & VM_FAULT_RETRY:
        value &= VM_FAULT_RETRY | VM_FAULT_MAJOR
    errors = value & VM_FAULT_ERROR
    if errors:
        lowest = errors & -errors
        value = (value & ~VM_FAULT_ERROR) | lowest
    if not value & VM_FAULT_HWPOISON_LARGE:
        hindex = 0
    return value | hindex


def _retry_possible(k: "Kernel", flags: int) -> bool:
    if flags & FAULT_FLAG_ALLOW_RETRY:
        return True
    return bool(flags & FAULT_FLAG_KILLABLE) and k.fatal_signal_pending()


def _drop_mmap_sem_for_retry(k: "Kernel", flags: int) -> None:
    if not (flags & FAULT_FLAG_ALLOW_RETRY and flags & FAULT_FLAG_RETRY_NOWAIT):
        k.up_read()


def vma_pte(vma: Vma, *, write: bool) -> Pte:
    """mk_pte(page, vma->vm_page_prot), plus maybe_mkwrite(pte_mkdirty()) for a write fault.

    vm_page_prot of a private mapping is read-only (COW); a shared writable file mapping is
    treated as write-notify (read-only until the first write), which is what every filesystem
    with dirty accounting gets. A VMA with none of R/W/X maps PAGE_NONE: a PROT_NONE entry.
    """
    if not vma.flags & (VM_READ | VM_WRITE | VM_EXEC):
        return Pte("protnone", user=True)
    writable = write and bool(vma.flags & VM_WRITE)
    return Pte("present", write=writable, user=True, exec=bool(vma.flags & VM_EXEC),
               dirty=writable, young=True)


def handle_pte_fault(k: "Kernel", vma: Vma, address: int, flags: int) -> int:
    """mm/memory.c v4.0 handle_pte_fault() (L3131)."""
    assert k.mm is not None
    entry = k.mm.pte(address)
    if entry is None:
        if vma.file is not None:
            return do_fault(k, vma, address, flags)
        return do_anonymous_page(k, vma, address, flags)
    if entry.state in ("swap", "hwpoison"):
        return do_swap_page(k, vma, address, flags, entry)
    if entry.state == "protnone":
        return do_numa_page(k, vma, address, entry)
    if flags & FAULT_FLAG_WRITE:
        if not entry.write:
            return do_wp_page(k, vma, address, entry)
        entry = Pte(entry.state, entry.write, entry.user, entry.exec, True, entry.young, entry.rsvd)
    # pte_mkyoung() + ptep_set_access_flags(): the entry was already usable; nothing to fix.
    k.mm.set_pte(address, Pte(entry.state, entry.write, entry.user, entry.exec, entry.dirty, True, entry.rsvd))
    return 0


def check_stack_guard_page(k: "Kernel", vma: Vma, address: int) -> int:
    """mm/memory.c v4.0 check_stack_guard_page() (L2532): keep one page below a stack VMA."""
    assert k.mm is not None
    address &= PAGE_MASK
    if vma.flags & VM_GROWSDOWN and address == vma.start:
        prev = k.mm.prev_vma(vma)
        if prev is not None and prev.end == address:
            return 0 if prev.flags & VM_GROWSDOWN else -12
        err = k.mm.expand_downwards(vma, address - PAGE_SIZE)
        k.call("check_stack_guard_page", f"expand_downwards({address - PAGE_SIZE:#x}) = {err}")
        return err
    return 0


def do_anonymous_page(k: "Kernel", vma: Vma, address: int, flags: int) -> int:
    """mm/memory.c v4.0 do_anonymous_page() (L2566): guard page, zero page on read, new page on write."""
    assert k.mm is not None
    if check_stack_guard_page(k, vma, address) < 0:
        return VM_FAULT_SIGSEGV
    if not flags & FAULT_FLAG_WRITE:
        # The zero page: vm_page_prot, never writable.
        k.mm.set_pte(address, vma_pte(vma, write=False))
        return 0
    pte = vma_pte(vma, write=False)
    if pte.present and vma.flags & VM_WRITE:
        pte = Pte("present", write=True, user=True, exec=pte.exec, dirty=True, young=True)
    k.mm.set_pte(address, pte)
    return 0


def do_fault(k: "Kernel", vma: Vma, address: int, flags: int) -> int:
    """mm/memory.c v4.0 do_fault(): do_read_fault / do_cow_fault / do_shared_fault, each through
    __do_fault() -> filemap_fault()."""
    assert k.mm is not None
    pgoff = ((address - vma.start) >> PAGE_SHIFT) + vma.pgoff
    ret = filemap_fault(k, vma, pgoff, flags)
    if ret & (VM_FAULT_ERROR | VM_FAULT_RETRY):
        return ret
    write = bool(flags & FAULT_FLAG_WRITE)
    # do_set_pte(): a write fault (COW copy, or the shared page after page_mkwrite) maps the
    # page writable and dirty if the VMA allows writes.
    k.mm.set_pte(address, vma_pte(vma, write=write))
    return ret & ~VM_FAULT_LOCKED


def _cache_state(vma: Vma, pgoff: int) -> str:
    assert vma.file is not None
    return vma.page_cache.get(pgoff, vma.file.cache)


def filemap_fault(k: "Kernel", vma: Vma, pgoff: int, flags: int) -> int:
    """mm/filemap.c v4.0 filemap_fault(): EOF -> SIGBUS; page-cache miss -> MAJOR with the page
    locked for I/O; a locked page -> lock_page_or_retry()."""
    assert vma.file is not None
    size_pages = (vma.file.size + PAGE_SIZE - 1) >> PAGE_SHIFT
    if pgoff >= size_pages:
        k.call("filemap_fault", f"pgoff {pgoff} beyond EOF ({size_pages} pages)")
        return VM_FAULT_SIGBUS
    ret = 0
    state = _cache_state(vma, pgoff)
    if state == "absent":
        # do_sync_mmap_readahead() + PGMAJFAULT; the page comes back locked while the read runs.
        k.count_vm_event("PGMAJFAULT")
        k.call("filemap_fault", f"pgoff {pgoff} not cached: read, major")
        ret = VM_FAULT_MAJOR
        state = "locked"
        vma.page_cache[pgoff] = "locked"
    if not lock_page_or_retry(k, flags, locked=(state == "locked")):
        vma.page_cache[pgoff] = "cached"  # the holder (I/O) unlocks it while we wait or retry
        return ret | VM_FAULT_RETRY
    vma.page_cache[pgoff] = "cached"
    return ret | VM_FAULT_LOCKED


def lock_page_or_retry(k: "Kernel", flags: int, *, locked: bool) -> bool:
    """include/linux/pagemap.h + mm/filemap.c v4.0 __lock_page_or_retry(): True if the page lock
    was taken; False means VM_FAULT_RETRY and (unless RETRY_NOWAIT) mmap_sem already released."""
    if not locked:
        return True  # trylock_page() succeeded
    if flags & FAULT_FLAG_ALLOW_RETRY:
        if flags & FAULT_FLAG_RETRY_NOWAIT:
            k.call("__lock_page_or_retry", "RETRY_NOWAIT: keep mmap_sem")
            return False
        k.call("__lock_page_or_retry", "drop mmap_sem, wait for the page")
        k.up_read()
        return False
    if flags & FAULT_FLAG_KILLABLE and k.fatal_signal_pending():
        k.call("__lock_page_or_retry", "__lock_page_killable fails: fatal signal; drop mmap_sem")
        k.up_read()
        return False
    k.call("__lock_page_or_retry", "__lock_page: wait")
    return True


def do_swap_page(k: "Kernel", vma: Vma, address: int, flags: int, entry: Pte) -> int:
    """mm/memory.c v4.0 do_swap_page() (L2364): hwpoison entry -> HWPOISON; swap-in -> MAJOR."""
    assert k.mm is not None
    page = address & PAGE_MASK
    if entry.state == "hwpoison":
        return VM_FAULT_HWPOISON
    ret = 0
    locked = False
    if page not in k.swap_cache:
        # swapin_readahead(): read from swap, a major fault; the page is locked for the read.
        k.count_vm_event("PGMAJFAULT")
        k.swap_cache.add(page)
        ret = VM_FAULT_MAJOR
        locked = True
    if not lock_page_or_retry(k, flags, locked=locked):
        return ret | VM_FAULT_RETRY
    write = bool(flags & FAULT_FLAG_WRITE)
    pte = vma_pte(vma, write=write)
    if write and pte.write:
        ret |= VM_FAULT_WRITE  # reuse_swap_page(): the only user, so map it writable now
    k.mm.set_pte(address, pte)
    k.swap_cache.discard(page)
    return ret


def do_numa_page(k: "Kernel", vma: Vma, address: int, entry: Pte) -> int:
    """mm/memory.c v4.0 do_numa_page(): rebuild the entry from vm_page_prot, mark it young, return 0."""
    assert k.mm is not None
    k.mm.set_pte(address, vma_pte(vma, write=False))
    return 0


def do_wp_page(k: "Kernel", vma: Vma, address: int, entry: Pte) -> int:
    """mm/memory.c v4.0 do_wp_page() (L2068): reuse (exclusive anon, or shared writable after
    page_mkwrite) or copy; either way the new entry is maybe_mkwrite(pte_mkdirty()), writable only
    if the VMA has VM_WRITE, and the result is VM_FAULT_WRITE."""
    assert k.mm is not None
    writable = bool(vma.flags & VM_WRITE)
    how = "reuse" if vma.flags & VM_SHARED else "copy"
    k.call("do_wp_page", how)
    k.mm.set_pte(address, Pte("present", write=writable, user=entry.user, exec=bool(vma.flags & VM_EXEC),
                              dirty=True, young=True))
    return VM_FAULT_WRITE


__all__ = ["handle_mm_fault", "core_result"]
