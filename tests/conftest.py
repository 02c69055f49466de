"""Shared fixtures: a fast simulator, and an environment with no stray key or base URL."""

from __future__ import annotations

import functools

import pytest
from kki_testing import new_ipython, point_package_at


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No test sees the developer's key or relay, and stores land in the test's own folder."""
    for name in ("KKI_API_KEY", "KKI_BASE_URL", "KKI_MODEL", "KKI_RELAY_PROFILE", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # What relays publish is cached per user (discovery.py): each test starts with none.
    monkeypatch.setenv("KKI_CACHE_DIR", str(tmp_path / "user-cache"))
    from kki_widgets import discovery

    discovery.forget()


@pytest.fixture(scope="session")
def fast_simulator():
    """A simulator with no artificial delays, shared by the whole run."""
    from kki_widgets.simulator import Simulator

    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=7) as sim:
        yield sim


@pytest.fixture
def relay_env(monkeypatch, fast_simulator):
    """Point the package at the fast simulator with the test key."""
    point_package_at(monkeypatch, fast_simulator)
    return fast_simulator


@pytest.fixture
def new_shell(tmp_path):
    """Each call is a fresh kernel (`kki_testing.new_ipython`) on the same notebook store."""
    from IPython.core.interactiveshell import InteractiveShell

    yield functools.partial(new_ipython, tmp_path / ".kki" / "notebook.json")
    InteractiveShell.clear_instance()
