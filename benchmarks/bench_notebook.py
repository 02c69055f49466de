"""Figure 6: notebook weight. A generated notebook with N `%%sora` cells (a 20-turn continuous
video: each cell remixes the previous one) is executed with nbclient against the simulator (its
own process; KKI_BASE_URL / KKI_API_KEY point the kernel at it), saved, and weighed: the .ipynb
(target < 200 KB for 20 turns) and the store file (`.kki/*.json`).
"""

from __future__ import annotations

import argparse
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


def build_notebook(turns: int):
    import nbformat

    cells = [nbformat.v4.new_code_cell("%load_ext kki_widgets")]
    for index in range(turns):
        options = "--orientation landscape" if index == 0 else ""
        cells.append(nbformat.v4.new_code_cell(f"%%sora {options}\n{PROMPTS[index % len(PROMPTS)]}"))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 turns instead of 20")
    parser.add_argument("--turns", type=int, default=None)
    args = parser.parse_args(argv)
    turns = args.turns or (3 if args.quick else 20)
    import nbformat
    from nbclient import NotebookClient

    # Clips are content-addressed: a persistent cache makes reruns of the benchmark fast.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kki_widgets"
    cache = cache / "bench-simulator"
    cache.mkdir(parents=True, exist_ok=True)
    timing = {"queue_seconds": 0.1, "generate_seconds": 0.3, "step_seconds": 0.05}
    with SimulatorProcess(media_dir=str(cache), **timing) as base_url, \
            tempfile.TemporaryDirectory(prefix="kki-bench-nb-") as folder:
        path = Path(folder) / "twenty_turns.ipynb"
        notebook = build_notebook(turns)
        saved = dict(os.environ)
        os.environ.update(KKI_BASE_URL=base_url, KKI_API_KEY="sk-kkibench-0b1c2d3e4f")
        os.environ.pop("KKI_MODEL", None)
        try:
            started = time.perf_counter()
            NotebookClient(notebook, timeout=120, kernel_name="python3",
                           resources={"metadata": {"path": folder}}).execute()
            elapsed = time.perf_counter() - started
        finally:
            os.environ.clear()
            os.environ.update(saved)
        nbformat.write(notebook, path)
        size = path.stat().st_size
        stores = list((Path(folder) / ".kki").glob("*.json"))
        store_size = sum(store.stat().st_size for store in stores)
        errors = [o for c in notebook.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        media = list((Path(folder) / "kki_media").glob("*")) if (
            Path(folder) / "kki_media").exists() else []
    per_turn = size / turns
    twenty = per_turn * 20
    emit("notebook.ipynb_size", size / 1024, "KB", turns=turns, cells_with_errors=len(errors))
    emit("notebook.ipynb_per_turn", per_turn / 1024, "KB/turn")
    emit("notebook.ipynb_size_20_turns", twenty / 1024, "KB" + ("" if turns == 20 else " (extrapolated)"),
         target="< 200 KB", met=twenty < 200 * 1024)
    emit("notebook.store_size", store_size / 1024, "KB", files=len(stores), turns=turns)
    emit("notebook.media_files", len(media), "files next to the notebook")
    emit("notebook.execute_seconds", elapsed, "s", turns=turns)
    table(f"Notebook weight: {turns} %%sora turns executed with nbclient")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
