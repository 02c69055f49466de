"""One error family (issue 23): ``except KkiError`` catches every error the package raises for users.

Every module of the package is imported and every exception class it defines is checked. The few
that never reach a user say why here; a name in that list that stops existing fails too, so the
list cannot rot into a blanket pass.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import kki_widgets
from kki_widgets.protocol.errors import ConfigurationError, KkiError

NEVER_REACH_USERS = {
    # store.py turns it into StoreError; an OSError so the journal's file code handles it alike.
    "kki_widgets.store.journal.JournalLinkError",
    # The simulator's side of the wire: it becomes an HTTP error answer, as a real relay's would.
    "kki_widgets.simulator.chat_request.ApiError",
    # Raised inside the simulator's streaming body so uvicorn drops the connection (a real cut).
    "kki_widgets.simulator.answer_stream.SimulatedCut",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for module in pkgutil.walk_packages(kki_widgets.__path__, "kki_widgets."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.name:
                found[f"{module.name}.{name}"] = value
    return found


CLASSES = _exception_classes()


def test_every_error_for_users_is_a_kki_error():
    outside = sorted(
        name
        for name, cls in CLASSES.items()
        if not issubclass(cls, KkiError)
        and name not in NEVER_REACH_USERS
        and not name.rpartition(".")[2].startswith("_")  # control flow inside one module
    )
    assert outside == []


def test_the_exceptions_list_names_classes_that_exist_and_are_outside_the_family():
    for name in NEVER_REACH_USERS:
        assert name in CLASSES, f"{name} is gone: drop it from NEVER_REACH_USERS"
        assert not issubclass(CLASSES[name], KkiError), f"{name} is a KkiError now: drop it from the list"


def test_the_walk_sees_the_whole_package():
    assert {"kki_widgets.media.downloads.MediaError", "kki_widgets.protocol.errors.RelayError",
            "kki_widgets.simulator.faults.FaultError"} <= set(CLASSES)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        # Callers that caught these by their builtin base keep working.
        ("kki_widgets.media.downloads.MediaError", RuntimeError),
        ("kki_widgets.media.downloads.MediaRefusedError", RuntimeError),
        ("kki_widgets.store.notebook_store.StoreError", RuntimeError),
        ("kki_widgets.net.addresses.AddressRefused", RuntimeError),
        ("kki_widgets.simulator.faults.FaultError", ValueError),
        ("kki_widgets.simulator.dialects.DialectError", ValueError),
        ("kki_widgets.simulator.render.RenderError", RuntimeError),
    ],
)
def test_errors_that_joined_the_family_keep_their_builtin_base(name, builtin):
    assert issubclass(CLASSES[name], KkiError) and issubclass(CLASSES[name], builtin)


def test_a_media_failure_is_caught_as_a_kki_error(tmp_path):
    from kki_widgets.media.downloads import stitch

    with pytest.raises(KkiError, match="stitch"):
        stitch([], tmp_path / "film.mp4")


def test_a_bad_fault_plan_is_a_configuration_error_naming_the_valid_forms():
    from kki_widgets.simulator.faults import parse_faults

    with pytest.raises(ConfigurationError, match="valid faults: cut_after_task_id"):
        parse_faults(["no_such_fault"])
