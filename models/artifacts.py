"""A content-addressed, crash-safe cache for built files (ONNX exports, fp16/int8 artifacts, engines).

``get_or_build(kind, key, build)``: ``key`` is a JSON-able dict of everything the result depends on
(input hashes, converter settings, tool versions); its SHA-256 names the entry. Entries are written
atomically next to a small ``.meta.json`` holding the key and the payload's SHA-256; an entry whose
payload no longer matches (truncated, bit-flipped, replaced) is reported and rebuilt, never used. A
file lock makes concurrent workers (``pytest -n 4``) or separate invocations build each entry once.

A checksum proves an entry intact, not who wrote it, and some entries run code when loaded (a
TensorRT plan is GPU code). So an entry is used only when its payload and record are regular files
owned by you and writable by nobody else, in folders that only you (or root) can change: owned by
you or root, and not writable by group/others unless the sticky bit is set (as on ``/tmp``, where
others cannot rename or delete your files). Anything else is reported by name and rebuilt; a kind
folder of yours that others could write is tightened (``chmod go-w``) first, one you do not own is
an :class:`UntrustedCache` error. Leftovers of killed writers (``.*.tmp``) and entries that are not
files (a folder put in their place) are removed, not kept forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import (
    atomic_write_bytes,
    atomic_write_text,
    file_lock,
    remove_non_file,
    sha256_bytes,
    sha256_file,
    stale_temps,
)

__all__ = [
    "ArtifactCache",
    "CacheEntry",
    "DamagedEntry",
    "UntrustedCache",
    "default_cache_dir",
    "folder_problem",
    "key_digest",
]

log = logging.getLogger("exitgate.cache")
CACHE_ENV = "EXITGATE_CACHE_DIR"
#: test-only: when set, every build appends ``<kind> <digest>`` to this file (self-tests count builds)
BUILD_LOG_ENV = "EXITGATE_BUILD_LOG"


def default_cache_dir() -> Path:
    """``$EXITGATE_CACHE_DIR``, else ``<repo>/.cache/exitgate``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parent.parent / ".cache" / "exitgate").resolve()


def key_digest(key: dict[str, Any]) -> str:
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str).encode()
    return sha256_bytes(blob)[:32]


class DamagedEntry(ValueError):
    """A cache entry's payload cannot be read or does not match its record."""


class UntrustedCache(ValueError):
    """A cache folder that other users can change; the message names it and the fix."""


def _writable_by_others(mode: int) -> str | None:
    who = [w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
    return " and ".join(who) or None


def file_problem(path: Path) -> str | None:
    """Why the file at ``path`` must not be used (not a regular file, someone else's, writable by
    others), or None when it may be."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    who = _writable_by_others(st.st_mode)
    if who:
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def folder_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why entries in ``folder`` cannot be trusted (someone else could replace them), or None:
    it must be owned by you or root and not writable by group/others unless sticky."""
    try:
        st = Path(folder).stat()
    except FileNotFoundError:
        return None
    if st.st_uid not in (os.geteuid(), 0):
        return f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}) or root"
    who = _writable_by_others(st.st_mode)
    if who and not st.st_mode & stat.S_ISVTX:
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}, no sticky bit)"
    return None


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    key: dict[str, Any]
    built: bool  # True if this call built it, False if it was served from the cache


class ArtifactCache:
    """Entries live at ``<root>/<kind>/<digest><suffix>`` with ``<digest>.meta.json`` beside."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root else default_cache_dir()
        #: number of builds this process ran, per kind (the concurrency self-tests count them)
        self.builds: dict[str, int] = {}

    def paths(self, kind: str, key: dict[str, Any], suffix: str) -> tuple[Path, Path]:
        if not kind.isidentifier():
            raise ValueError(f"cache kind must be an identifier, got {kind!r}")
        digest = key_digest(key)
        folder = self.root / kind
        return folder / f"{digest}{suffix}", folder / f"{digest}.meta.json"

    def valid(self, kind: str, key: dict[str, Any], suffix: str) -> Path | None:
        """The entry's path if present and intact, else None (a damaged entry is logged)."""
        path, meta_path = self.paths(kind, key, suffix)
        if not path.exists() and not meta_path.exists():
            return None
        problem = self._untrusted(path, meta_path)
        if problem:
            log.warning("cache entry %s; not using it, rebuilding", problem)
            return None
        try:
            meta = json.loads(meta_path.read_text())
            ok = (
                meta.get("key") == json.loads(json.dumps(key, default=str))
                and meta.get("size") == path.stat().st_size
                and meta.get("sha256") == sha256_file(path)
            )
        except (OSError, ValueError) as exc:
            log.warning("cache entry %s unreadable (%s); rebuilding", path, exc)
            return None
        if not ok:
            log.warning("cache entry %s does not match its record (damaged?); rebuilding", path)
            return None
        return path

    def read_verified(self, path: str | os.PathLike[str]) -> bytes:
        """The payload at ``path``, checked against its record (size and SHA-256) before anyone
        uses it, and only when no one else could have written it (see the module docstring);
        ``DamagedEntry`` says what is wrong."""
        path = Path(path)
        meta_path = path.with_name(path.name[: -len(path.suffix) or None] + ".meta.json")
        problem = self._untrusted(path, meta_path)
        if problem:
            raise DamagedEntry(f"is not trusted: {problem}")
        try:
            data = path.read_bytes()
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise DamagedEntry(f"is unreadable ({exc})") from exc
        if meta.get("size") != len(data) or meta.get("sha256") != sha256_bytes(data):
            raise DamagedEntry("does not match its checksum record")
        return data

    def get_or_build(
        self, kind: str, key: dict[str, Any], build: Callable[[], bytes], suffix: str = ".bin"
    ) -> CacheEntry:
        path, meta_path = self.paths(kind, key, suffix)
        hit = self.valid(kind, key, suffix)
        if hit is not None:
            return CacheEntry(hit, key, built=False)
        self._own_folder(path.parent)
        with file_lock(path):
            hit = self.valid(kind, key, suffix)  # another worker may have built it meanwhile
            if hit is not None:
                return CacheEntry(hit, key, built=False)
            # We hold the entry's lock, so no one is writing it: temp files of this entry are
            # leftovers of a killed writer, and a folder in the entry's place is replaced.
            for name in (path.name, meta_path.name):
                for leftover in path.parent.glob(f".{name}.*.tmp"):
                    if not remove_non_file(leftover, "leftover"):
                        leftover.unlink(missing_ok=True)
            remove_non_file(path)
            remove_non_file(meta_path)
            data = build()
            if not isinstance(data, bytes | bytearray) or not data:
                raise TypeError(f"builder for {kind} returned {type(data).__name__}, not bytes")
            # Payload first, record last: a crash in between leaves an entry without a valid
            # record, which the next run rebuilds.
            with contextlib.suppress(FileNotFoundError):
                meta_path.unlink()
            atomic_write_bytes(path, bytes(data))
            meta = {"key": key, "size": len(data), "sha256": sha256_bytes(bytes(data))}
            atomic_write_text(meta_path, json.dumps(meta, sort_keys=True, default=str, indent=1))
            self.builds[kind] = self.builds.get(kind, 0) + 1
            build_log = os.environ.get(BUILD_LOG_ENV)
            if build_log:  # O_APPEND: one short line per write, whole even across processes
                with open(build_log, "a") as fh:
                    fh.write(f"{kind} {path.stem} {os.getpid()}\n")
            log.info("built %s entry %s", kind, path.name)
            return CacheEntry(path, key, built=True)

    def _untrusted(self, path: Path, meta_path: Path) -> str | None:
        """What makes the entry at ``path`` untrustworthy, naming the file, or None."""
        for folder in (self.root, path.parent):
            problem = folder_problem(folder)
            if problem:
                return f"{path}: its folder {folder} {problem}"
        for p in (path, meta_path):
            problem = file_problem(p)
            if problem:
                return f"{p} {problem}"
        return None

    def _own_folder(self, folder: Path) -> None:
        """Create ``folder`` (and the root) so that only we can change them; tighten a folder of
        ours that others could write; refuse one that someone else controls."""
        for f in (self.root, folder):
            f.mkdir(mode=0o755, parents=True, exist_ok=True)
            problem = folder_problem(f)
            if problem is None:
                continue
            st = f.stat()
            if st.st_uid == os.geteuid():
                os.chmod(f, stat.S_IMODE(st.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
                log.warning("cache folder %s %s; removed group/other write access", f, problem)
                continue
            raise UntrustedCache(
                f"cache folder {f} {problem}: anyone who can write there could plant an engine "
                "that runs when loaded. Use a cache folder of your own (--cache-dir=DIR or "
                "EXITGATE_CACHE_DIR), or have its owner run `chmod go-w` on it"
            )

    def remove_stale_temps(self) -> list[Path]:
        """Remove temp files that killed writers left in the cache folders (older than a few
        minutes, writer gone); returns what was removed."""
        removed = []
        if not self.root.is_dir():
            return removed
        for folder in [self.root, *(p for p in self.root.iterdir() if p.is_dir())]:
            for p in stale_temps(folder):
                with contextlib.suppress(OSError):
                    if not remove_non_file(p, "leftover"):
                        p.unlink()
                    removed.append(p)
        if removed:
            log.info("removed %d leftover temp file(s) of killed writers", len(removed))
        return removed

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """True if ``path`` resolves inside this cache (engines load only from there)."""
        try:
            Path(path).resolve().relative_to(self.root)
        except ValueError:
            return False
        return True
