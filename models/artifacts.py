"""A content-addressed, crash-safe cache for built files (ONNX exports, fp16/int8 artifacts, engines).

``get_or_build(kind, key, build)``: ``key`` is a JSON-able dict of everything the result depends on
(input hashes, converter settings, tool versions); its SHA-256 names the entry. Entries are written
atomically next to a small ``.meta.json`` holding the key and the payload's SHA-256; an entry whose
payload no longer matches (truncated, bit-flipped, replaced) is reported and rebuilt, never used. A
file lock makes concurrent workers (``pytest -n 4``) or separate invocations build each entry once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import atomic_write_bytes, atomic_write_text, file_lock, sha256_bytes, sha256_file

__all__ = ["ArtifactCache", "CacheEntry", "DamagedEntry", "default_cache_dir", "key_digest"]

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
        uses it; ``DamagedEntry`` says what is wrong."""
        path = Path(path)
        meta_path = path.with_name(path.name[: -len(path.suffix) or None] + ".meta.json")
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
        with file_lock(path):
            hit = self.valid(kind, key, suffix)  # another worker may have built it meanwhile
            if hit is not None:
                return CacheEntry(hit, key, built=False)
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

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """True if ``path`` resolves inside this cache (engines load only from there)."""
        try:
            Path(path).resolve().relative_to(self.root)
        except ValueError:
            return False
        return True
