"""Property-based tests: random small graphs, with and without live exits, never crash discovery
and are classified as built."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.probe import settle
from models.structure import SCORE_OUTPUT, analyze, reference_model
from tests.graphs import Spec, build

specs = st.builds(
    Spec,
    layout=st.sampled_from(["concat", "separate"]),
    threshold=st.sampled_from(["input", "constant"]),
    threshold_value=st.floats(0.05, 0.95),
    nhwc=st.booleans(),
    condition=st.sampled_from(["data", "constant", "threshold_only"]),
    compare=st.sampled_from(["Greater", "GreaterOrEqual", "Less"]),
    negate=st.booleans(),
    branch_mismatch=st.booleans(),
    flag_outside=st.booleans(),
    with_if=st.booleans(),
    seed=st.integers(0, 2**16),
)


def expected_problems(s: Spec) -> set[str]:
    if not s.with_if:
        return {"no_if"}
    out = set()
    if s.condition == "constant" or (s.condition == "threshold_only" and s.threshold != "input"):
        return {"constant_condition"}  # the one reason: nothing else matters (no input reaches it)
    if s.condition == "threshold_only":
        out.add("input_independent_condition")
    if s.branch_mismatch:
        out.add("branch_shape_mismatch")
    if s.flag_outside:
        out.add("flag_outside_if")
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_discovery_never_crashes_and_classifies(s: Spec) -> None:
    a = analyze(build(s), "random")
    assert {p.code for p in a.problems} == expected_problems(s)
    if s.with_if:
        assert a.image_layout == ("NHWC" if s.nhwc else "NCHW")
    if a.ok:
        assert a.condition == "data_dependent"
        assert a.exit_when == (">=" if s.compare == "GreaterOrEqual" else ">")
        if s.threshold == "constant":
            assert a.threshold_constant is not None
            assert abs(a.threshold_constant - s.threshold_value) < 1e-6


# graphs whose exit is live: no constant or input-independent condition, no structural defect
live_specs = specs.map(
    lambda s: Spec(
        **{
            **s.__dict__,
            "condition": "data",
            "branch_mismatch": False,
            "flag_outside": False,
            "with_if": True,
        }
    )
)


@settings(max_examples=60, deadline=None)
@given(live_specs, st.floats(0.0, 1.0))
def test_live_exits_are_driven_and_forced_correctly(s: Spec, t: float) -> None:
    m = build(s)
    x = np.random.default_rng(s.seed).standard_normal((3, 4, 4)).astype(np.float32)  # NCHW
    settled = settle(m, analyze(m, "random"), [x, -x], 0.5)
    m, a, paths = settled.model, settled.analysis, settled.paths
    image = x.transpose(1, 2, 0) if s.nhwc else x  # the model's own layout
    assert a.ok, a.explain()
    assert a.layout == s.layout
    feeds = {"image": image[None], "threshold": np.array([t], np.float32)}
    flag_name = a.flag_output
    for force, flag in (("exit", 0.0), ("deep", 1.0)):
        r = reference_model(m, a, force)
        sess = ort.InferenceSession(r.SerializeToString(), providers=["CPUExecutionProvider"])
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
        assert float(np.asarray(out[flag_name]).reshape(-1)[-1]) == flag
        conf = float(out[SCORE_OUTPUT])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    leaves = conf >= t if s.compare == "GreaterOrEqual" else conf > t
    assert float(np.asarray(out[flag_name]).reshape(-1)[-1]) == (0.0 if leaves else 1.0)
    for path, flag in (("exit_always", 0.0), ("exit_never", 1.0)):
        feeds["threshold"] = np.array([paths[path].threshold], np.float32)
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
        assert float(np.asarray(out[flag_name]).reshape(-1)[-1]) == flag
