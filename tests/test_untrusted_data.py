"""Nothing is executed that the user did not write (issue 13): CIFAR-10 batches go through a
restricted unpickler; cache entries (TensorRT plans above all) are used only when no one else could
have written them, and are otherwise reported by name and rebuilt."""

from __future__ import annotations

import logging
import os
import pickle
import re
import stat
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fixtures.backends.tensorrt import compat, plan_cache
from models.artifacts import ArtifactCache, DamagedEntry, UntrustedCache
from models.dataset import DataError, load_cifar10
from tests.conftest import REPO
from tests.hostile import (
    AS_ROOT,
    KEY,
    NEEDS_ROOT,
    OTHER_UID,
    PAYLOAD,
    ZOO,
    assert_clean,
    usage_error,
)
from tests.onnx_graphs import early_exit_graph

# ---- 2. nothing executed that the user did not write: CIFAR batches ------------------------------


def _op_str(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: a Python 2 str
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b


def _op_int(v: int) -> bytes:
    return b"K" + bytes([v]) if v < 256 else b"M" + struct.pack("<H", v)


def py2_cifar_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch byte for byte as the official ``cifar-10-batches-py`` files are: Python 2's cPickle,
    protocol 2, str keys, numpy's ``numpy.core.multiarray._reconstruct`` for the uint8 array."""
    n = data.shape[0]
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + _op_int(0)
        + b"\x85"
        + _op_str(b"b")
        + b"\x87R("
        + _op_int(1)
        + _op_int(n)
        + _op_int(3072)
        + b"\x86"
        + b"cnumpy\ndtype\n"
        + _op_str(b"u1")
        + _op_int(0)
        + _op_int(1)
        + b"\x87R("
        + _op_int(3)
        + _op_str(b"|")
        + b"NNN"
        + b"J\xff\xff\xff\xff" * 2
        + _op_int(0)
        + b"tb"
        + b"\x89"
        + _op_str(data.tobytes())
        + b"tb"
    )
    names = b"](" + b"".join(_op_str(f"img_{i}.png".encode()) for i in range(n)) + b"e"
    return (
        b"\x80\x02}("
        + _op_str(b"batch_label")
        + _op_str(b"testing batch 1 of 1")
        + _op_str(b"data")
        + array
        + _op_str(b"labels")
        + b"]("
        + b"".join(map(_op_int, labels))
        + b"e"
        + _op_str(b"filenames")
        + names
        + b"u."
    )


def _batch_arrays(n: int = 12) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]


@pytest.mark.parametrize("flavour", ["python2_official", "python3_protocol2"])
def test_real_cifar_batches_load(tmp_path: Path, flavour: str) -> None:
    """Fails when the restricted unpickler refuses what a real batch holds (users could not use
    their CIFAR-10 folder at all)."""
    data, labels = _batch_arrays()
    if flavour == "python2_official":
        blob = py2_cifar_batch(data, labels)
    else:  # re-pickled with Python 3 and numpy 2: str keys, bytes through _codecs.encode/latin1
        batch = {
            "batch_label": "testing batch 1 of 1",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{i}.png" for i in range(len(labels))],
        }
        blob = pickle.dumps(batch, protocol=2)
        assert b"_codecs" in blob and b"latin1" in blob
    (tmp_path / "test_batch").write_bytes(blob)
    ds = load_cifar10(tmp_path)
    assert ds.x.shape == (len(labels), 3, 32, 32) and ds.x.dtype == np.float32
    assert ds.y.tolist() == labels
    first = data[0].reshape(3, 32, 32).astype(np.float32) / 255.0  # channel 0, undo the scaling
    assert np.allclose(ds.x[0, 0] * 0.2470 + 0.4914, first[0], atol=1e-5)


class _Reduce:
    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _hostile_batches(marker: Path) -> dict[str, tuple[bytes, str]]:
    data, _ = _batch_arrays(2)
    touch = f"touch {marker}"
    import builtins

    return {
        "os_system": (pickle.dumps(_Reduce(os.system, touch), protocol=2), "posix.system"),
        "inside_the_batch": (
            pickle.dumps({b"data": data, b"labels": _Reduce(os.system, touch)}, protocol=2),
            "posix.system",
        ),
        "eval": (  # protocol 4: a planted file need not look like an old pickle
            pickle.dumps(_Reduce(builtins.eval, f"__import__('os').system({touch!r})"), protocol=4),
            "builtins.eval",
        ),
        "subprocess": (
            pickle.dumps(_Reduce(subprocess.call, ["touch", str(marker)]), protocol=4),
            "subprocess.call",
        ),
    }


@pytest.mark.parametrize("attack", ["os_system", "inside_the_batch", "eval", "subprocess"])
def test_planted_batch_runs_nothing(tmp_path: Path, attack: str) -> None:
    """A planted test_batch that runs a command when unpickled: fails when the loader executes it
    (the marker file appears) or when the refusal does not name the file and what it asked for."""
    marker = tmp_path / "pwned"
    blob, global_name = _hostile_batches(marker)[attack]
    pickle.loads(blob)  # negative control: the standard loader does run it
    assert marker.exists()
    marker.unlink()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(blob)
    with pytest.raises(DataError) as info:
        load_cifar10(folder)
    assert not marker.exists()
    assert str(folder / "test_batch") in str(info.value)
    assert f"asks for {global_name}, which a CIFAR-10 batch never contains" in str(info.value)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
            "'data' must be a uint8 array",
        ),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "integers in 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "'labels' must be a list of 2"),
        ([1, 2, 3], "a list, not a dict"),
    ],
    ids=["float_data", "label_10", "short_labels", "not_a_dict"],
)
def test_batch_with_the_wrong_content(tmp_path: Path, batch: object, message: str) -> None:
    """Fails when a harmless but wrong pickle is taken as images (or crashes later, unnamed)."""
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=re.escape(message)) as info:
        load_cifar10(tmp_path)
    assert str(tmp_path / "test_batch") in str(info.value)


def test_planted_calibration_batch_through_the_suite(run_suite, tmp_path: Path) -> None:
    """--calibration-data on a planted CIFAR folder, int8, default traceback style: fails when the
    command runs, or when an affected test shows more than one message naming the file."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(_hostile_batches(marker)["os_system"][0])
    result = run_suite(
        str(REPO / "suites" / "test_exit_flag.py"),
        str(REPO / "suites" / "test_precision_audit.py"),
        *ZOO,
        "--precision=int8",
        f"--calibration-data={folder}",
    )
    out = result.stdout.str()
    assert not marker.exists(), out
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    sections = assert_clean(out)
    assert len(sections) >= 3, out
    for title, lines in sections.items():
        assert any(f"{folder / 'test_batch'}: not a CIFAR-10 python batch" in ln for ln in lines), (
            title,
            lines,
        )


# ---- 2. nothing executed that the user did not write: the cache ---------------------------------


def _plant(cache: ArtifactCache, how: str) -> tuple[Path, Path]:
    entry = cache.get_or_build("hostile", KEY, lambda: PAYLOAD)
    path, meta = entry.path, cache.paths("hostile", KEY, ".bin")[1]
    target = meta if how.startswith("meta") else path
    if how.endswith("other_uid"):
        os.chown(target, OTHER_UID, OTHER_UID)
    elif how.endswith("group_writable"):
        os.chmod(target, 0o664)
    elif how.endswith("other_writable"):
        os.chmod(target, 0o606)
    elif how == "payload_symlink":
        elsewhere = cache.root.parent / "elsewhere.bin"
        elsewhere.write_bytes(PAYLOAD)
        path.unlink()
        path.symlink_to(elsewhere)
    return path, meta


@pytest.mark.parametrize(
    "how",
    [
        "payload_other_uid",
        "meta_other_uid",
        "payload_group_writable",
        "payload_other_writable",
        "meta_group_writable",
        "payload_symlink",
    ],
)
def test_untrusted_entry_is_refused_and_rebuilt(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry someone else wrote (or could have rewritten) with a matching checksum record: fails
    when it is served (valid / read_verified) instead of being reported by name and rebuilt."""
    if "other_uid" in how and not AS_ROOT:
        pytest.skip(NEEDS_ROOT)
    cache = ArtifactCache(tmp_path / "cache")
    path, meta = _plant(cache, how)
    planted = meta if how.startswith("meta") else path
    with caplog.at_level(logging.WARNING, logger="exitgate.cache"):
        assert cache.valid("hostile", KEY, ".bin") is None
    assert str(planted) in caplog.text and "not using it, rebuilding" in caplog.text
    with pytest.raises(DamagedEntry, match="is not trusted"):
        cache.read_verified(path)
    entry = cache.get_or_build("hostile", KEY, lambda: PAYLOAD)
    assert entry.built and cache.builds == {"hostile": 2}
    for p in (path, meta):  # rebuilt: a regular file of ours, writable by nobody else
        st = p.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid(), p
        assert not st.st_mode & 0o022, oct(st.st_mode)
    assert cache.read_verified(path) == PAYLOAD
    assert cache.valid("hostile", KEY, ".bin") == path


def test_cache_folder_writable_by_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A kind folder others can write: nothing is read from it until ours is tightened; fails when
    an entry is served from it, or when one we cannot fix is used instead of refused."""
    cache = ArtifactCache(tmp_path / "cache")
    path = cache.get_or_build("hostile", KEY, lambda: PAYLOAD).path
    os.chmod(path.parent, 0o777)
    with caplog.at_level(logging.WARNING, logger="exitgate.cache"):
        assert cache.valid("hostile", KEY, ".bin") is None
        assert cache.get_or_build("hostile", KEY, lambda: PAYLOAD).path == path
    assert f"its folder {path.parent} is writable by group and others" in caplog.text
    assert f"cache folder {path.parent} is writable by group and others" in caplog.text
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755  # tightened: entries checked again
    assert cache.valid("hostile", KEY, ".bin") == path
    # a sticky folder (like /tmp) is fine: others cannot rename or delete our files there
    os.chmod(path.parent, 0o1777)
    assert cache.valid("hostile", KEY, ".bin") == path
    if not AS_ROOT:
        return
    os.chmod(path.parent, 0o777)  # someone else's folder that anyone can write: refused
    os.chown(path.parent, OTHER_UID, OTHER_UID)
    assert cache.valid("hostile", KEY, ".bin") is None
    with pytest.raises(UntrustedCache) as info:
        cache.get_or_build("hostile", KEY, lambda: PAYLOAD)
    assert f"cache folder {path.parent} is owned by uid {OTHER_UID}" in str(info.value)
    assert "--cache-dir" in str(info.value)


@pytest.mark.skipif(not AS_ROOT, reason=NEEDS_ROOT)
def test_cache_dir_of_another_user_is_a_usage_error(run_inprocess, tmp_path: Path) -> None:
    """Fails when a cache folder anyone can write, owned by someone else, is accepted."""
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    os.chmod(shared, 0o777)
    os.chown(shared, OTHER_UID, OTHER_UID)
    err = usage_error(run_inprocess(*ZOO, f"--cache-dir={shared}"))
    assert f"--cache-dir={shared} ({shared}) is owned by uid {OTHER_UID}" in err
    assert "could plant an engine" in err


def test_planted_plan_is_refused_and_rebuilt(tmp_path: Path, monkeypatch) -> None:
    """A TensorRT plan (GPU code) planted by another uid with a matching record: fails when the
    plan loader returns it, or when the next build does not replace it."""
    if not AS_ROOT:
        pytest.skip(NEEDS_ROOT)
    pytest.importorskip(
        "tensorrt_rtx",
        reason="TensorRT for RTX is not installed: pip install "
        "tensorrt-rtx-cu13 (CPU parser+builder)",
    )

    monkeypatch.setenv(compat.FLAVOR_ENV, "tensorrt_rtx")
    src = tmp_path / "model.onnx"
    src.write_bytes(early_exit_graph().SerializeToString())
    cache, device = ArtifactCache(tmp_path / "cache"), {"name": "cpu", "compute_capability": None}
    opts = {"workspace_bytes": 1 << 28, "opt_level": 0}
    path = plan_cache.cached_plan(cache, src, "fp32", "strong", opts, device)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(plan_cache.PlanCacheError) as info:
        plan_cache.load_plan(cache, path)
    assert f"{path} is owned by uid {OTHER_UID}, not by you" in str(info.value)
    assert plan_cache.cached_plan(cache, src, "fp32", "strong", opts, device) == path
    assert cache.builds == {plan_cache.PLAN_KIND: 2} and path.stat().st_uid == os.geteuid()
    assert plan_cache.load_plan(cache, path) == path.read_bytes()
