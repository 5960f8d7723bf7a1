"""A pytest plugin used by a self-test: after collection, report heavy modules imported so far."""

import sys

HEAVY = ("torch", "tensorrt", "tensorrt_rtx", "onnxruntime", "matplotlib")


def pytest_collection_finish(session) -> None:
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    print(f"heavy modules: {', '.join(loaded) or 'none'}")
