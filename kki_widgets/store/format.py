"""The store file's format 2: whole turns and cache entries in, their stored form out, and back.

Pure functions over dicts (no I/O), used by `kki_widgets.store.notebook_store` under its lock. The stored form
holds each answer once (a content-addressed ``answers`` table) and each message once: a turn
keeps its own prompt message and how many messages of its parent's context it sent
(``history``), so a remix chain grows linearly. Paths inside the notebook folder are relative.
Whatever is read back may have been edited: parents must come earlier, or they are dropped.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

__all__ = [
    "SentMemo",
    "compact_entry",
    "drop_unused_answers",
    "empty_store",
    "inflate_conversation",
    "inflate_entry",
    "migrate_v1",
    "put_turn",
]

FORMAT_VERSION = 2


def empty_store() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "conversations": {}, "answers": {}, "cache": {},
            "pending": [], "usage": {}, "claims": {}}


_PATH_KEYS = ("path", "thumbnail_path")


def _put_answer(answers: dict, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    answers[digest] = text
    return digest


def _stored_path(path: Any, root: Path) -> Any:
    """A path inside the notebook's folder as a relative POSIX path; anything else as it is."""
    if not isinstance(path, str) or not path:
        return path
    try:
        return Path(path).absolute().relative_to(root).as_posix()
    except ValueError:
        return path


def _loaded_path(path: Any, root: Path) -> Any:
    if not isinstance(path, str) or not path:
        return None
    return str(root / path) if not Path(path).is_absolute() else path


def _compact_generation(generation: dict | None, answers: dict) -> dict:
    stored = dict(generation or {})
    text = stored.pop("text", None)
    if text:
        stored["answer"] = _put_answer(answers, text)
    return stored


def _inflate_generation(generation: dict | None, answers: dict) -> dict:
    whole = dict(generation or {})
    digest = whole.pop("answer", None)
    whole["text"] = answers.get(digest, "") if isinstance(digest, str) else whole.get("text", "")
    return whole


def _context(turns: dict, turn_id: Any, answers: dict) -> list | None:
    """What a child of ``turn_id`` continues: its messages plus its answer (None: unknown)."""
    chain, seen = [], set()
    while isinstance(turn_id, str) and turn_id in turns and turn_id not in seen:
        seen.add(turn_id)
        chain.append(turns[turn_id])
        if "messages" in turns[turn_id] or not turns[turn_id].get("history"):
            break
        turn_id = turns[turn_id].get("parent")
    else:
        return None  # missing parent or a cycle: the chain cannot be rebuilt
    # One list grown in place (a chain's turns each send all of their parent's context): linear
    # in the chain, where rebuilding it turn by turn was quadratic (7 ms a write at 1,000 turns).
    context: list = []
    for record in reversed(chain):
        if "messages" in record:
            context = list(record["messages"])
        else:
            history = int(record.get("history") or 0)
            if history < len(context):
                context = context[len(context) - history :] if history else []
            if "message" in record:
                context.append(record["message"])
        context.append(_assistant(record, answers))
    return context


def _messages_of(record: dict, parent_context: list) -> list:
    if "messages" in record:
        return list(record["messages"])
    history = int(record.get("history") or 0)
    sent = parent_context[-history:] if history else []
    return [*sent, record["message"]] if "message" in record else sent


def _assistant(record: dict, answers: dict) -> dict:
    digest = (record.get("generation") or {}).get("answer")
    return {"role": "assistant", "content": answers.get(digest, "") if digest else ""}


class SentMemo:
    """What the last few saved turns sent, as the caller's own lists (the same message objects,
    not copies), kept by the store between writes.

    A remix sends its parent's messages plus the parent's answer. Checking that against the
    stored chain means rebuilding the parent's context, linear in the chain: about 20 ms a write
    at 1,000 turns. A child of a turn saved a moment ago is recognised here instead by comparing
    with what that turn sent (a C-speed comparison of the same objects). Valid only while the
    stored turns do not change under it: the store clears it whenever it reads another writer's
    changes, and `put_turn` when a stored turn's messages or answer change.
    """

    SIZE = 8

    def __init__(self) -> None:
        self._entries: dict[str, tuple[dict, list]] = {}  # turn ID -> (its record, what it sent)

    def clear(self) -> None:
        self._entries.clear()

    def remember(self, turn_id: str, record: dict, messages: list) -> None:
        self._entries.pop(turn_id, None)
        self._entries[turn_id] = (record, list(messages))
        if len(self._entries) > self.SIZE:
            del self._entries[next(iter(self._entries))]

    def carry(self, turn_id: str, previous: dict, record: dict) -> None:
        """The turn was saved again with the same messages (a new status, its answer)."""
        entry = self._entries.get(turn_id)
        if entry is not None and entry[0] is previous:
            self._entries[turn_id] = (record, entry[1])

    def continues(self, turns: dict, parent: Any, messages: list, answers: dict) -> bool:
        """Whether ``messages`` are exactly what ``parent`` sent, its answer, and one more."""
        entry = self._entries.get(parent) if isinstance(parent, str) else None
        if entry is None or turns.get(parent) is not entry[0]:
            return False
        record, sent = entry
        return (
            len(messages) == len(sent) + 2
            and messages[-2] == _assistant(record, answers)
            and messages[:-2] == sent
        )


def _same(message: Any) -> Any:
    return message


def put_turn(
    turns: dict, turn: dict, answers: dict, root: Path, stored_message=None,
    sent: SentMemo | None = None,
) -> None:
    """Put ``turn`` into ``turns`` in its stored form. ``stored_message`` (message → message)
    gives a message's stored form (images kept as files, see `store_frames`); the history is
    compared in that form, so a turn continuing a stored parent is stored as a continuation.
    ``sent``: the store's memo of recent turns (see `SentMemo`)."""
    # The history is only compared, rarely kept: do not copy it up front.
    record = {key: copy.deepcopy(value) for key, value in turn.items() if key != "messages"}
    turn_id = record["id"]
    record["generation"] = _compact_generation(record.get("generation"), answers)
    for key in _PATH_KEYS:
        record[key] = _stored_path(record.get(key), root)
    previous = turns.get(turn_id) or {}
    messages = turn.get("messages")
    sent = sent if sent is not None else SentMemo()
    if isinstance(messages, list) and messages:
        _put_messages(record, previous, messages, turns, answers, stored_message or _same, sent)
    elif messages is not None:
        record["messages"] = copy.deepcopy(messages)
    answered = (previous.get("generation") or {}).get("answer")
    if answered and answered != record["generation"].get("answer"):
        sent.clear()  # children remembered having sent the old answer
    turns[turn_id] = record


def _put_messages(record, previous, messages, turns, answers, stored, sent: SentMemo) -> None:
    last = stored(messages[-1])
    history = len(messages) - 1
    if (
        "message" in previous
        and previous.get("parent") == record.get("parent")
        and previous["message"] == last
        and previous.get("history") == history
    ):  # a turn's messages never change: no need to compare the history
        record["history"], record["message"] = previous["history"], previous["message"]
        sent.carry(record["id"], previous, record)
        return
    if previous:
        sent.clear()  # a stored turn's messages changed: what was remembered may not hold
    if history and sent.continues(turns, record.get("parent"), messages, answers):
        record["history"], record["message"] = history, copy.deepcopy(last)
    else:
        _compact_messages(record, [*map(stored, messages[:-1]), last], turns, answers)
    sent.remember(record["id"], record, messages)


def _compact_messages(record: dict, messages: list, turns: dict, answers: dict) -> None:
    history = len(messages) - 1
    context = _context(turns, record.get("parent"), answers) if history else []
    if context is not None and history <= len(context) and context[-history:] == messages[:-1]:
        record["history"], record["message"] = history, copy.deepcopy(messages[-1])
    else:  # not a continuation of the stored parent: keep it whole, exactly as sent
        record["messages"] = copy.deepcopy(messages)


def inflate_conversation(conversation: dict, answers: dict, root: Path) -> dict:
    whole = {k: copy.deepcopy(v) for k, v in conversation.items() if k != "turns"}
    contexts: dict[str, list] = {}
    turns = []
    for turn_id, record in (conversation.get("turns") or {}).items():
        if not isinstance(record, dict):
            continue
        turn = copy.deepcopy(record)
        parent = turn.get("parent")
        if parent not in contexts:  # missing, later, or itself: never a loop when walked
            parent = None
        turn["id"], turn["parent"] = turn_id, parent
        turn["messages"] = _messages_of(turn, contexts.get(parent, []))
        for key in ("history", "message"):
            turn.pop(key, None)
        turn["generation"] = _inflate_generation(turn.get("generation"), answers)
        for key in _PATH_KEYS:
            turn[key] = _loaded_path(turn.get(key), root)
        contexts[turn_id] = [*turn["messages"], _assistant(record, answers)]
        turns.append(turn)
    whole["turns"] = turns
    if whole.get("head") not in contexts:
        whole["head"] = None
    return whole


def compact_entry(entry: dict, answers: dict, root: Path) -> dict:
    record = copy.deepcopy(dict(entry))
    if "generation" in record:
        record["generation"] = _compact_generation(record["generation"], answers)
    message = record.pop("assistant_message", None)
    if isinstance(message, str):
        record["assistant_answer"] = _put_answer(answers, message)
    paths = record.get("paths")
    if isinstance(paths, dict):
        record["paths"] = {k: _stored_path(v, root) for k, v in paths.items()}
    return record


def inflate_entry(entry: dict, answers: dict, root: Path) -> dict:
    whole = copy.deepcopy(entry)
    if "generation" in whole:
        whole["generation"] = _inflate_generation(whole["generation"], answers)
    digest = whole.pop("assistant_answer", None)
    if isinstance(digest, str):
        whole["assistant_message"] = answers.get(digest, "")
    paths = whole.get("paths")
    if isinstance(paths, dict):
        whole["paths"] = {k: _loaded_path(v, root) for k, v in paths.items()}
    return whole


def drop_unused_answers(store: dict) -> None:
    used = {
        (turn.get("generation") or {}).get("answer")
        for conversation in store["conversations"].values()
        for turn in (conversation.get("turns") or {}).values()
        if isinstance(turn, dict)
    }
    for entry in store["cache"].values():
        used.add((entry.get("generation") or {}).get("answer"))
        used.add(entry.get("assistant_answer"))
    store["answers"] = {k: v for k, v in store["answers"].items() if k in used}


def migrate_v1(data: dict, root: Path) -> dict[str, Any]:
    """A version-1 store (turn lists with the full history each, absolute paths) as version 2."""
    store = empty_store()
    store["pending"] = list(data.get("pending") or [])
    store["usage"] = dict(data.get("usage") or {})
    for key, entry in (data.get("cache") or {}).items():
        if isinstance(entry, dict):
            store["cache"][key] = compact_entry(entry, store["answers"], root)
    for name, old in (data.get("conversations") or {}).items():
        if not isinstance(old, dict):
            continue
        turns: dict = {}
        listed = [t for t in old.get("turns") or [] if isinstance(t, dict)]
        for position, turn in enumerate(listed):
            parent = turn.get("parent")
            record = {k: v for k, v in turn.items() if k != "index"}
            record["id"] = f"v1-{position}"
            # Parents must come first: a turn naming itself or a later one had none.
            record["parent"] = f"v1-{parent}" if isinstance(parent, int) and 0 <= parent < position else None
            put_turn(turns, record, store["answers"], root)
        head = old.get("head")
        store["conversations"][name] = {
            **{k: v for k, v in old.items() if k not in ("turns", "head")},
            "turns": turns,
            "head": f"v1-{head}" if isinstance(head, int) and 0 <= head < len(listed) else None,
        }
    return store

