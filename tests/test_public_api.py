"""The top-level API a user meets first: `generate()` and what `import kki_widgets` offers."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kki_widgets
from kki_widgets.protocol.errors import ConfigurationError


def test_generate_takes_client_arguments_and_generation_options(relay_env):
    # deadline/max_retries are the client's, on_update the call's: both work in one call.
    seen = []
    generation = kki_widgets.generate(
        "a paper boat on a rainy street", deadline=60, max_retries=1, on_update=seen.append
    )
    assert generation.status == "completed" and generation.video_url.endswith(".mp4")
    assert seen and seen[-1] == generation


def test_generate_rejects_an_empty_prompt_before_sending(relay_env):
    with pytest.raises(ConfigurationError, match="prompt is empty"):
        kki_widgets.generate("   ")


def test_unknown_option_is_a_type_error_naming_it(relay_env):
    with pytest.raises(TypeError, match="colour"):
        kki_widgets.generate("a fox", colour="red")


def test_import_stays_light():
    # `import kki_widgets` must not pull httpx, anywidget or the simulator in (cold start).
    code = (
        "import sys, kki_widgets; "
        "heavy = [m for m in ('httpx', 'anywidget', 'starlette', 'kki_widgets.client.relay') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_are_the_user_facing_ones():
    exported = set(kki_widgets.__all__)
    assert {"VideoChat", "Conversation", "Turn", "TurnHandle", "RelayClient", "generate"} <= exported
    # Internals stay importable from their modules, not from the top level.
    assert not exported & {"Transcript", "NotebookStore", "Settings", "Simulator"}
    from kki_widgets.conversation.session import TurnHandle

    assert kki_widgets.TurnHandle is TurnHandle
