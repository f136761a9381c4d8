"""Test setup: headless rendering must be chosen before mujoco is imported."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
# Tiny networks and many short-lived processes on 2 cores: one math thread per process (tests and the
# pipelines they start) instead of torch's one per core, which only adds contention.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    """Property tests: 80 examples in the full suite, 25 in the fast subset (-m "not slow")."""
    from hypothesis import settings
    settings.register_profile("full", max_examples=80)
    settings.register_profile("fast", max_examples=25)
    settings.load_profile("fast" if "not slow" in (config.option.markexpr or "") else "full")
