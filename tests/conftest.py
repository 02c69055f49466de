"""Shared fixtures: a fast simulator, and an environment with no stray key or base URL."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import settings
from kki_testing import end_ipython, new_ipython, point_package_at

# Under CI the property tests draw the same examples every run (a red run is then the code's,
# reproducible from its log); locally they explore new ones each time.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

PACKAGE = Path(__file__).resolve().parents[1] / "kki_widgets"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No test sees the developer's key or relay, and stores land in the test's own folder."""
    for name in ("KKI_API_KEY", "KKI_BASE_URL", "KKI_MODEL", "KKI_RELAY_PROFILE", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # What relays publish is cached per user (discovery.py): each test starts with none.
    monkeypatch.setenv("KKI_CACHE_DIR", str(tmp_path / "user-cache"))
    from kki_widgets.client import discovery

    discovery.forget()


@pytest.fixture(scope="session", autouse=True)
def _simulators_share_rendered_clips():
    """Every simulator a test starts without a media folder, here or in a kernel or subprocess the
    test starts, keeps its clips in `_clip_cache`: a clip renders once per machine, not once per
    simulator (about 800 ffmpeg runs a run before). Tests of rendering itself give a folder."""
    from kki_widgets.simulator.server import MEDIA_DIR_VARIABLE

    os.environ[MEDIA_DIR_VARIABLE] = str(_clip_cache())
    yield
    os.environ.pop(MEDIA_DIR_VARIABLE, None)


@pytest.fixture(scope="session")
def clip_cache() -> Path:
    """The folder of `_clip_cache`, for a test's own simulator (``media_dir=clip_cache``)."""
    return _clip_cache()


def _clip_cache() -> Path:
    """Where the fast simulator keeps its rendered clips between runs (as the embedded one does
    for users), one folder per version of what renders them: the simulator's code and ffmpeg.
    Hundreds of ffmpeg runs a run (~0.2 CPU-s each) then happen once per machine and version, not
    on every run; clips are named by everything they show, so a test gets the same bytes."""
    import imageio_ffmpeg

    from kki_widgets.simulator.embedded import default_media_dir

    sources = [*sorted((PACKAGE / "simulator").glob("*.py")), PACKAGE / "media" / "film.py"]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources))
    digest.update(imageio_ffmpeg.get_ffmpeg_version().encode())
    folder = default_media_dir().parent / f"test-clips-{digest.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def fast_simulator():
    """A simulator with no artificial delays, shared by the whole run (by each worker's)."""
    from kki_widgets.simulator import Simulator

    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0, seed=7, media_dir=_clip_cache()) as sim:
        yield sim


@pytest.fixture
def relay_env(monkeypatch, fast_simulator):
    """Point the package at the fast simulator with the test key."""
    point_package_at(monkeypatch, fast_simulator)
    return fast_simulator


@pytest.fixture
def new_shell(tmp_path):
    """Each call is a fresh kernel (`kki_testing.new_ipython`) on the same notebook store."""
    yield functools.partial(new_ipython, tmp_path / ".kki" / "notebook.json")
    end_ipython()
