"""Figure 6: notebook weight. Two generated notebooks of a 20-turn continuous video (each turn
remixes the previous one) are executed with nbclient against the simulator (its own process;
KKI_BASE_URL / KKI_API_KEY point the kernel at it), saved, and weighed: the .ipynb (target
< 200 KB for 20 turns) and the store file (`.kki/*.json`).

- `sora`: one `%%sora` cell per turn;
- `videochat`: one VideoChat, 20 `await chat.send(...)` in one cell.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import SimulatorProcess, emit, table

PROMPTS = [
    "a paper boat sailing down a rainy street", "the boat reaches a gutter waterfall",
    "it drops into a canal at night", "lanterns light the water", "a cat watches from a bridge",
    "the cat jumps onto the boat", "they drift past a market", "fireworks start overhead",
    "the canal opens to the sea", "a whale surfaces nearby", "the whale sprays the boat",
    "dawn breaks over the waves", "seagulls circle the boat", "an island appears",
    "the boat lands on white sand", "the cat explores the beach", "it finds a message in a bottle",
    "the message is a map", "the cat sails off again", "the sun sets behind them",
]


def build_notebook(turns: int, kind: str = "sora"):
    import nbformat

    prompts = [PROMPTS[index % len(PROMPTS)] for index in range(turns)]
    if kind == "sora":
        cells = [nbformat.v4.new_code_cell("%load_ext kki_widgets")]
        for index, prompt in enumerate(prompts):
            options = "--orientation landscape" if index == 0 else ""
            cells.append(nbformat.v4.new_code_cell(f"%%sora {options}\n{prompt}"))
    else:
        cells = [
            nbformat.v4.new_code_cell("from kki_widgets import VideoChat\nchat = VideoChat()\nchat"),
            nbformat.v4.new_code_cell(
                f"for prompt in {prompts!r}:\n    turn = await chat.send(prompt)\n"
                "    assert turn.status == 'completed', turn\nlen(chat.turns)"
            ),
        ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def weigh(kind: str, turns: int, base_url: str) -> int:
    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="kki-nb-") as folder:
        path = Path(folder) / f"{kind}.ipynb"
        notebook = build_notebook(turns, kind)
        saved = dict(os.environ)
        # A key that appears nowhere else (the store refuses to write data containing the key).
        os.environ.update(KKI_BASE_URL=base_url, KKI_API_KEY="sk-kkibench-0b1c2d3e4f")
        os.environ.pop("KKI_MODEL", None)
        try:
            started = time.perf_counter()
            NotebookClient(notebook, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": folder}}).execute()
            elapsed = time.perf_counter() - started
        except Exception as error:  # report, do not crash the whole run
            print(f"notebook {kind} failed: {type(error).__name__}: {str(error)[-300:]}",
                  file=sys.stderr)
            return 1
        finally:
            os.environ.clear()
            os.environ.update(saved)
        nbformat.write(notebook, path)
        size = path.stat().st_size
        widget_state = len(json.dumps(notebook.metadata.get("widgets", {})))
        kki = Path(folder) / ".kki"
        stores = [*kki.glob("*.json"), *kki.glob("*.journal")]  # the snapshot and its journal
        store_size = sum(store.stat().st_size for store in stores)
    if turns == 20:
        emit(f"notebook.{kind}.ipynb_size", size / 1024, "KB", target="< 200 KB",
             met=size < 200 * 1024, turns=turns, widget_state_kb=widget_state / 1024)
    else:  # --quick: fewer turns, no target
        emit(f"notebook.{kind}.ipynb_size", size / 1024, "KB", turns=turns,
             widget_state_kb=widget_state / 1024)
    emit(f"notebook.{kind}.store_size", store_size / 1024, "KB", files=len(stores), turns=turns)
    emit(f"notebook.{kind}.execute_seconds", elapsed, "s", turns=turns)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 turns instead of 20")
    parser.add_argument("--turns", type=int, default=None)
    args = parser.parse_args(argv)
    turns = args.turns or (3 if args.quick else 20)
    # Clips are content-addressed: a persistent cache makes reruns of the benchmark fast.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kki_widgets"
    cache = cache / "bench-simulator"
    cache.mkdir(parents=True, exist_ok=True)
    timing = {"queue_seconds": 0.1, "generate_seconds": 0.3, "step_seconds": 0.05}
    failed = 0
    with SimulatorProcess(media_dir=str(cache), **timing) as base_url:
        for kind in ("sora", "videochat"):
            failed += weigh(kind, turns, base_url)
    table(f"Notebook weight: {turns} turns executed with nbclient")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
