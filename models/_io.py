"""Crash-safe file writes and inter-process locks, shared by every cache in the project.

A reader never sees a half-written file: data goes to a temporary file in the same directory, is
fsynced, then renamed over the target (atomic on POSIX). A lock file serialises builders, so
``pytest -n 4`` on a cold cache builds each artifact once. Temporary files carry their writer's pid
(``.<name>.<pid>.<random>.tmp``), so the leftovers of a killed writer can be told from the files of
a live one (:func:`stale_temps`). :func:`replace_dir` puts a whole folder in place at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

__all__ = [
    "STALE_TMP_SECONDS",
    "atomic_write_bytes",
    "atomic_write_text",
    "dist_version",
    "file_lock",
    "remove_non_file",
    "replace_dir",
    "sha256_bytes",
    "sha256_file",
    "stale_temps",
    "temp_prefix",
]

log = logging.getLogger("exitgate.cache")
#: a temporary file older than this whose writer is gone is a leftover (writes take seconds)
STALE_TMP_SECONDS = 300.0
_TEMP_PID = re.compile(r"\.(\d+)\.[^.]+\.tmp$")


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporary files for target ``name``."""
    return f".{name}.{os.getpid()}."


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def stale_temps(
    folder: str | os.PathLike[str], older_than: float = STALE_TMP_SECONDS
) -> list[Path]:
    """Temporary files and folders (``.*.tmp``) in ``folder`` left by writers that are gone: older
    than ``older_than`` seconds and either named with a pid that is no live process on this
    machine or (an older naming) with none."""
    now = time.time()
    found = []
    with contextlib.suppress(OSError):
        for p in Path(folder).glob(".*.tmp"):
            try:
                age = now - p.lstat().st_mtime
            except OSError:
                continue
            m = _TEMP_PID.search(p.name)
            if age > older_than and not (m and _writer_alive(int(m.group(1)))):
                found.append(p)
    return found


def remove_non_file(path: str | os.PathLike[str], what: str = "cache entry") -> bool:
    """Remove ``path`` if it exists and is not a regular file (a folder, a link, a fifo ...) so
    that a regular file can be written there; True if something was removed (and logged)."""
    p = Path(path)
    try:
        mode = p.lstat().st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISREG(mode):
        return False
    kind = "a folder" if stat.S_ISDIR(mode) else "a link" if stat.S_ISLNK(mode) else "not a file"
    log.warning("%s %s is %s, not a file; replacing it", what, p, kind)
    if stat.S_ISDIR(mode):
        shutil.rmtree(p)
    else:
        p.unlink()
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_dir(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the folder ``new`` at ``target`` (same file system), removing what ``target`` held.

    Where the kernel can swap two paths (Linux 3.15+) a reader sees the old folder or the new one,
    never neither; elsewhere ``target`` is missing for the moment between two renames. Either way
    no reader sees files of both.
    """
    new, target = Path(new), Path(target)
    if not target.exists() and not target.is_symlink():
        os.rename(new, target)
        return
    if target.is_dir() and not target.is_symlink() and _exchange(new, target):
        shutil.rmtree(new)  # now the old folder
        return
    old = target.with_name(f"{temp_prefix(target.name)}old.tmp")
    os.rename(target, old)
    os.rename(new, target)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout: float = 1800.0) -> Iterator[None]:
    """Hold an exclusive inter-process lock named after ``path`` (``<path>.lock``); a lock path
    that is not a file (a folder put there by hand) is replaced rather than failing forever."""
    lock_path = Path(f"{os.fspath(path)}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    remove_non_file(lock_path, "lock file")
    with FileLock(str(lock_path), timeout=timeout):
        yield


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dist_version(*names: str) -> str | None:
    """The installed version of the first of ``names`` that is installed (no import)."""
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def parse_toml(raw: bytes, source: str, what: str, error: type[Exception]) -> dict[str, Any]:
    """The TOML document in ``raw`` (the bytes of ``source``, a ``what``: "manifest", "device
    profile"); otherwise ``error`` naming the file and what is wrong (the byte that is not UTF-8,
    the TOML error)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 (JetPack 6)
        import tomli as tomllib
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(
            f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save "
            f"the {what} as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML ({exc}); fix the {what}") from None
