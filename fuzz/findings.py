"""The findings store: one directory per divergence signature, shared safely by concurrent
campaign processes, written so that a killed campaign loses nothing.

Layout of DIR/<slug>/: scenario.json (the first reproducer), input.bin (its raw fuzzer input,
when there is one), report.txt (side-by-side report), meta.json (signature, kind, count,
first/last seen, suppression id). Harness errors (a model raised, the emulator crashed) are
findings of kind "harness-error", kept apart from divergences.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
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
        return self.path / "scenario.json"


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


class FindingsStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

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
        d = self.root / slug(signature)
        now = time.time()
        with self._locked():
            meta_path = d / "meta.json"
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                meta["count"] += 1
                meta["last_seen"] = now
                write_atomic(meta_path, json.dumps(meta, indent=1).encode())
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
            return True

    def findings(self) -> list[Finding]:
        out = []
        for meta_path in sorted(self.root.glob("*/meta.json")):
            try:
                m = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            out.append(Finding(meta_path.parent, m["signature"], m.get("kind", "divergence"),
                               m["count"], m["first_seen"], m["last_seen"], m.get("known")))
        return sorted(out, key=lambda f: f.first_seen)
