"""Device profiles load and validate; detection reads what the machine says."""

from __future__ import annotations

import pytest

from fixtures import devices
from fixtures.devices import ProfileError, detect, load_profile, profile_names

REQUIRED = {"orin-nano", "agx-orin", "orin-nx", "xavier-nx", "jetson-nano", "a100", "h100",
            "rtx-4090", "cpu"}  # fmt: skip


def test_every_required_profile_exists_and_loads() -> None:
    assert REQUIRED <= set(profile_names())
    for name in profile_names():
        p = load_profile(name)
        assert p.name == name
        for prec in p.precisions:
            assert p.tol(prec, "flip_rate") > 0


def test_profile_facts_users_rely_on() -> None:
    assert "int8" not in load_profile("jetson-nano").precisions  # Maxwell: no INT8 in TensorRT
    orin = load_profile("orin-nano")
    assert orin.compute_capability == "8.7" and orin.integrated
    assert orin.latency_ordering == ("fp32", "fp16", "int8")
    assert orin.workspace_mib <= 2048  # 8 GB shared with the CPU
    assert load_profile("cpu").latency_ordering == ()


@pytest.mark.parametrize(
    ("jetson", "cuda", "expected"),
    [
        ("NVIDIA Jetson Orin Nano Developer Kit", None, "orin-nano"),
        ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", None, "orin-nano"),
        ("NVIDIA Jetson Nano Developer Kit", None, "jetson-nano"),
        ("Jetson AGX Orin Developer Kit", None, "agx-orin"),
        ("NVIDIA Jetson Xavier NX Developer Kit", None, "xavier-nx"),
        ("", "NVIDIA H100 80GB HBM3", "h100"),
        ("", "NVIDIA A100-SXM4-40GB", "a100"),
        ("", "NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("", "Tesla T4", "cpu"),
        ("", "", "cpu"),
    ],
)
def test_detection(jetson: str, cuda: str | None, expected: str, monkeypatch) -> None:
    monkeypatch.delenv("EXITGATE_FORCE_CPU", raising=False)
    monkeypatch.setattr(devices, "_cuda_device_name", lambda: None)
    assert detect(jetson_model=jetson, cuda_name=cuda).profile == expected


def test_device_tree_string_has_its_nul_stripped(tmp_path, monkeypatch) -> None:
    f = tmp_path / "model"
    f.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    monkeypatch.setattr(devices, "DEVICE_TREE_MODEL", f)
    monkeypatch.delenv("EXITGATE_FORCE_CPU", raising=False)
    d = detect()
    assert d.profile == "orin-nano"
    assert d.evidence == "device-tree model 'NVIDIA Jetson Orin Nano Developer Kit'"


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"--device=orin: unknown device profile; known: a100"):
        load_profile("orin")


def test_malformed_profile_names_the_file_and_key(tmp_path) -> None:
    bad = tmp_path / "mine.toml"
    text = (devices.PROFILE_DIR / "orin-nano.toml").read_text()
    bad.write_text(text.replace('precisions = ["fp32", "fp16", "int8"]', 'precisions = ["fp64"]'))
    with pytest.raises(ProfileError, match=rf"{bad}: unknown precision\(s\) \['fp64'\]"):
        load_profile(str(bad))
    bad.write_text("name = ")
    with pytest.raises(ProfileError, match=rf"{bad}: cannot read device profile"):
        load_profile(str(bad))
    bad.write_text(text.replace("workspace_mib = 1024", ""))
    with pytest.raises(ProfileError, match=rf"{bad}: missing key 'workspace_mib'"):
        load_profile(str(bad))
