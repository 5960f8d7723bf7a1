"""Device profiles load and validate; detection reads what the machine says."""

from __future__ import annotations

import pytest

from fixtures import devices
from fixtures.devices import ProfileError, detect, load_profile, profile_names

REQUIRED = {
    "orin-nano",
    "agx-orin",
    "orin-nx",
    "xavier-nx",
    "jetson-nano",
    "a100",
    "h100",
    "h200",
    "rtx-4090",
    "cpu",
}


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
        ("", "NVIDIA H200", "h200"),
        ("", "NVIDIA A100-SXM4-40GB", "a100"),
        ("", "NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("", "Tesla T4", "cpu"),  # a name without properties (no cuda-python): nothing to derive
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
    with pytest.raises(
        ProfileError, match=rf"{bad}: not valid TOML \(.*\); fix the device profile"
    ):
        load_profile(str(bad))
    bad.write_text(text.replace("workspace_mib = 1024", ""))
    with pytest.raises(ProfileError, match=rf"{bad}: missing key 'workspace_mib'"):
        load_profile(str(bad))


def _props(name: str, major: int, minor: int, gib: float, integrated: bool = False) -> dict:
    return {
        "device": 0,
        "name": name,
        "compute_capability": f"{major}.{minor}",
        "major": major,
        "minor": minor,
        "integrated": integrated,
        "total_memory": int(gib * 2**30),
        "multiprocessors": 20,
    }


@pytest.mark.parametrize(
    ("name", "cc", "gib", "precisions", "ordering"),
    [
        ("NVIDIA RTX A2000 12GB", (8, 6), 12, ("fp32", "fp16", "int8"), ("fp32", "fp16", "int8")),
        ("Tesla T4", (7, 5), 15, ("fp32", "fp16", "int8"), ("fp32", "fp16", "int8")),
        ("Tesla P100-PCIE-16GB", (6, 0), 16, ("fp32", "fp16"), ()),  # no int8, no tensor cores
        ("GeForce GTX 750 Ti", (5, 0), 2, ("fp32",), ()),
    ],
)
def test_an_unknown_gpu_gets_a_generic_gpu_profile_not_cpu(
    name: str, cc: tuple[int, int], gib: float, precisions: tuple, ordering: tuple, monkeypatch
) -> None:
    monkeypatch.delenv("EXITGATE_FORCE_CPU", raising=False)
    d = detect(jetson_model="", cuda_name=name, props=_props(name, *cc, gib))
    p = devices.profile_for(d)
    assert d.generated is p and p.name.startswith("generic-") and p.name != "cpu"
    assert p.kind == "dgpu" and p.compute_capability == f"{cc[0]}.{cc[1]}"
    assert (p.precisions, p.latency_ordering) == (precisions, ordering)
    assert p.memory_gib == pytest.approx(gib)
    for prec in p.precisions:
        assert p.tol(prec, "flip_rate") > 0
    assert name in d.evidence and "fixtures/profiles/<name>.toml" in d.evidence
    assert "/" not in p.name and ".." not in p.name  # it names the baseline folder


def test_generic_profile_of_an_integrated_gpu_is_a_jetson_with_a_small_workspace() -> None:
    p = devices.generic_gpu_profile(_props("Orin (nvgpu)", 8, 7, 7.4, integrated=True))
    assert p.kind == "jetson" and p.integrated and p.workspace_mib <= 2048
