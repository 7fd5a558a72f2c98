"""The findings store: one directory per divergence signature, shared safely by concurrent
campaign processes, written so that a killed campaign loses nothing.

Layout of DIR/<slug>/: scenario.json (the first reproducer), input.bin (its raw fuzzer input,
when there is one), report.txt (side-by-side report), meta.json (signature, kind, count,
first/last seen, suppression id). Harness errors (a model raised, the emulator crashed) are
findings of kind "harness-error", kept apart from divergences.

Concurrency: the first sighting of a signature creates its directory under an flock on DIR/.lock,
so across processes exactly one reproducer is stored and never overwritten. Later sightings are
counted without the lock or any system call: each process increments a slot in its own memory-mapped
file DIR/.counts/c-<pid>-<n> (shared mappings reach the page cache at once, so the counts survive a
SIGKILL), because taking the lock and rewriting meta.json for every divergent input serialised the
workers of a parallel campaign. Readers add those slots to meta.json's count; counts files of dead
processes are folded into meta.json by `compact()`.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import mmap
import os
import re
import struct
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class Finding:
    path: Path
    signature: str
    kind: str
    count: int
    first_seen: float
    last_seen: float
    known: str | None

    @property
    def reproducer(self) -> Path:
        """The scenario JSON, or the raw input when the scenario could not be decoded."""
        scenario = self.path / "scenario.json"
        raw = self.path / "input.bin"
        return raw if not scenario.exists() and raw.exists() else scenario


def slug(signature: str) -> str:
    """A stable, readable directory name for a signature."""
    digest = hashlib.sha1(signature.encode()).hexdigest()[:10]
    words = re.sub(r"[^A-Za-z0-9_.-]+", "-", signature).strip("-")[:80]
    return f"{words}-{digest}"


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# One counts-file slot: sightings (u64), last seen (f64), the finding's slug (NUL-padded).
SLOT = struct.Struct("<Qd112s")
SLOTS = 1024
_serial = itertools.count()


class CountsFile:
    """This process's sighting counters, in a shared mapping of DIR/.counts/c-<pid>-<n>.

    The owner holds a shared flock on the file for its lifetime, so `compact()` can tell a live
    file from one left by a dead process without trusting pids.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        name = f"{os.getpid()}-{next(_serial)}-{os.urandom(3).hex()}"
        # Locked before it gets the name compact() looks at, so it is never taken for a dead one.
        tmp = directory / f"tmp-{name}"
        self.fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        self.path = directory / f"c-{name}"
        os.rename(tmp, self.path)
        os.ftruncate(self.fd, SLOT.size * SLOTS)
        self.map = mmap.mmap(self.fd, SLOT.size * SLOTS)
        self.slots: dict[str, int] = {}

    def add(self, slug_: str, now: float) -> bool:
        """Count one sighting; False when the file is full (the caller falls back to meta.json)."""
        i = self.slots.get(slug_)
        if i is None:
            if len(self.slots) == SLOTS:
                return False
            i = self.slots[slug_] = len(self.slots)
            SLOT.pack_into(self.map, i * SLOT.size, 0, now, slug_.encode()[:112])
        count, _, name = SLOT.unpack_from(self.map, i * SLOT.size)
        SLOT.pack_into(self.map, i * SLOT.size, count + 1, now, name)
        return True


def read_counts(path: Path) -> dict[str, tuple[int, float]]:
    """slug -> (sightings, last seen) of one counts file."""
    out: dict[str, tuple[int, float]] = {}
    try:
        data = path.read_bytes()
    except OSError:
        return out
    for off in range(0, len(data) - SLOT.size + 1, SLOT.size):
        count, last, name = SLOT.unpack_from(data, off)
        if not name.strip(b"\0"):
            break
        key = name.rstrip(b"\0").decode(errors="replace")
        c, l = out.get(key, (0, 0.0))
        out[key] = (c + count, max(l, last))
    return out


class FindingsStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._known: set[str] = set()  # signatures with a complete directory, seen by this process
        self._counts: CountsFile | None = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def record(self, signature: str, kind: str, scenario_json: str | None, raw: bytes | None,
               report: str, known: str | None = None) -> bool:
        """Count one sighting; the first one also stores the reproducer. True if it is new.

        The directory is created and filled under the store lock, and meta.json is written last
        and atomically, so every directory that has a meta.json has a complete reproducer.
        """
        if self.count_if_known(signature):
            return False
        d = self.root / slug(signature)
        now = time.time()
        with self._locked():
            meta_path = d / "meta.json"
            if meta_path.exists():
                self._known.add(signature)
                self._bump(d, now)
                return False
            d.mkdir(exist_ok=True)
            if scenario_json is not None:
                write_atomic(d / "scenario.json", scenario_json.encode())
            if raw is not None:
                write_atomic(d / "input.bin", raw)
            write_atomic(d / "report.txt", report.encode())
            meta = {"signature": signature, "kind": kind, "count": 1, "first_seen": now,
                    "last_seen": now, "known": known}
            write_atomic(meta_path, json.dumps(meta, indent=1).encode())
            self._known.add(signature)
            return True

    def count_if_known(self, signature: str) -> bool:
        """Count a sighting of a signature this process has already seen stored; False otherwise.

        Cheap (no lock, no system call), so the target calls it before building a report.
        """
        if signature not in self._known:
            return False
        d = self.root / slug(signature)
        now = time.time()
        if self._counts is None:
            self._counts = CountsFile(self.root / ".counts")
        if not self._counts.add(d.name, now):
            with self._locked():
                self._bump(d, now)
        return True

    def _bump(self, d: Path, now: float) -> None:
        """Add one sighting to meta.json itself (caller holds the lock)."""
        meta_path = d / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["count"] += 1
        meta["last_seen"] = max(meta["last_seen"], now)
        write_atomic(meta_path, json.dumps(meta, indent=1).encode())

    def _extra_counts(self) -> dict[str, tuple[int, float]]:
        total: dict[str, tuple[int, float]] = {}
        for path in (self.root / ".counts").glob("c-*"):
            for key, (c, l) in read_counts(path).items():
                tc, tl = total.get(key, (0, 0.0))
                total[key] = (tc + c, max(tl, l))
        return total

    def compact(self) -> None:
        """Fold the counts files of dead processes into meta.json and remove them."""
        directory = self.root / ".counts"
        if not directory.is_dir():
            return
        with self._locked():
            for path in sorted(directory.glob("c-*")):
                if self._counts is not None and path == self._counts.path:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    continue
                try:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # its process is alive and still counting
                    for key, (c, l) in read_counts(path).items():
                        meta_path = self.root / key / "meta.json"
                        if not meta_path.exists() or not c:
                            continue
                        meta = json.loads(meta_path.read_text())
                        meta["count"] += c
                        meta["last_seen"] = max(meta["last_seen"], l)
                        write_atomic(meta_path, json.dumps(meta, indent=1).encode())
                    path.unlink()
                finally:
                    os.close(fd)

    def findings(self) -> list[Finding]:
        out = []
        extra = self._extra_counts()
        for meta_path in sorted(self.root.glob("*/meta.json")):
            try:
                m = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            c, last = extra.get(meta_path.parent.name, (0, 0.0))
            out.append(Finding(meta_path.parent, m["signature"], m.get("kind", "divergence"),
                               m["count"] + c, m["first_seen"], max(m["last_seen"], last), m.get("known")))
        return sorted(out, key=lambda f: f.first_seen)
