"""A conversation's turns as the store keeps them: by ID, each naming its parent's ID (indexes
are this kernel's; other kernels add turns too), and written only when they changed.

`Conversation` (kki_widgets.conversation.session) does the store calls; this keeps the bookkeeping.
"""

from __future__ import annotations

import uuid

from .turn import Turn, saved_form


class SavedTurns:
    def __init__(self):
        self._ids: dict[int, str] = {}  # turn index -> its ID in the store
        self._written: dict[str, tuple] = {}  # turn ID -> what was last written (`saved_form`)

    def restore(self, data: dict, media_dir) -> tuple[list[Turn], int | None]:
        """The turns of a stored conversation (merged from every kernel that wrote) and the
        index of its head."""
        turns: list[Turn] = []
        index_of: dict[str, int] = {}
        for record in data.get("turns", []):
            turn = Turn.from_dict({**record, "index": len(turns)})
            # The store only names earlier turns as parents: a chain of parents always ends.
            turn.parent = index_of.get(record.get("parent"))
            # The folder may have been edited or shared: only our own media files are used.
            turn.keep_own_files(turn.path, turn.thumbnail_path, media_dir)
            index_of[record["id"]] = turn.index
            self._ids[turn.index] = record["id"]
            self._written[record["id"]] = saved_form(turn)
            turns.append(turn)
        return turns, index_of.get(data.get("head"))

    def changes(self, turns: list[Turn], head: int | None) -> tuple[list[tuple[dict, tuple]], str | None]:
        """The records of the turns that changed since they were last written (with the form
        to remember once they are), and the head's ID."""
        changed = []
        for turn in turns:
            turn_id = self._ids.setdefault(turn.index, uuid.uuid4().hex[:16])
            form = saved_form(turn)
            if self._written.get(turn_id) != form:
                record = turn.to_dict()
                del record["index"]
                record["id"] = turn_id
                record["parent"] = self._ids.get(turn.parent)
                changed.append((record, form))
        return changed, self._ids.get(head)

    def written(self, changed: list[tuple[dict, tuple]]) -> None:
        """The store has these records now."""
        self._written.update((record["id"], form) for record, form in changed)
