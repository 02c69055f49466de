"""The notebook front ends: the `VideoChat` widget (with `js/`), the `%%sora` / `%sora` magics and
their film commands. They hold no protocol knowledge: they call a `Conversation` and render
turns through `kki_widgets.display`.

`widget.VideoChat` (anywidget, `js/widget.js` + `js/widget.css`): the JS shows the status words
Python sends (`status_text`, `running`, `cost_text`, `price_text`) and keeps none of its own.
A turn still being made at the relay (or cancelled after the relay accepted it) offers Resume
where Python says it is `resumable` (a task ID and the relay's raw-data link): `VideoChat.resume`
follows the same task, nothing sent again; a still-running turn that cannot be followed says why
(`resume_note`). A turn's `note` ("picked up the generation started at 14:02 (no new charge)")
is drawn under it, as on the `%%sora` card.
Updates are marshalled onto the widget's loop and flushed at most every 0.1 s (≤ 10 comm messages
a second). Saved widget state keeps relative media paths only and drops loopback URLs where a
local copy exists. Beside the view it displays a static twin (a display id updated as turns
finish; `widget.css` hides it wherever the widget renders), because nbconvert prefers a saved
widget view and drops the bundle's HTML (blank offline). A `text/plain` is never an object's repr.

`js/widget.js` stays one ES module on purpose: anywidget imports `_esm` from a `blob:` URL (so do
saved notebooks and HTML exports), where relative imports cannot resolve. Its sections: types;
URL checks (`safeUrl`, `safeLocalPath`, `resolveLocal`); DOM helpers (`createElement` and
`textContent` only); `TurnView`; `TakesRow`; `Header`, `TurnList`, `Composer`; `Channel`; the
widget (a factory: `initialize` attaches the model's one `msg:custom` listener to a `Channel`;
every request gets a promise of its reply, matched by id; Python answers each once: `ok`, `error`
or `media` with the bytes). The `Channel` greets the kernel (`hello`) on attach, since a restored
view has no comm and what it sends is dropped silently; a request unanswered in 6 s (media: 60 s,
`ANSWER_SECONDS`) is answered "no kernel: run the cell to reconnect" unless the kernel is busy,
and the composer keeps the prompt, hides the price and turns its controls off.

Media, in order (`TurnView.candidates`): the copy next to the notebook through the page's file
route (`/files/` in JupyterLab and Notebook 7, found from the panel's tab or the page URL and
PageConfig `baseUrl`; `/voila/files/` in Voila, which serves it only when
`VoilaConfiguration.file_allowlist` allows `kki_media/`), the relative `./kki_media/…` on pages
without a Jupyter config (HTML export, marimo), then the relay's URL; when none is left or all
failed, the kernel sends the bytes of the kept file (`_send_media`, a `blob:` URL, also behind
Download). Poster failures are seen through a hidden `<img>` (a `<video poster>` raises none).

`magics.SoraMagics` (IPython `Magics`, `Configurable`): `%%sora` waits inside its cell so nbclient
and Run All record the final state; a cell has one output, its card, updated in place; the `Turn`
is the cell's value, and a display printer registered by the magic skips drawing it twice. Each
cell is anchored to the parent it continued from (by JupyterLab/nbclient cell id, else by content)
and a new kernel starts from a fresh head, so Restart & Run All sends the same requests and every
one is a cache hit. Ctrl-C stops the wait, not the generation. `SoraMagics.budget` is one ledger
for every session of the kernel. Line commands: `history`, `show`, `reset`, `undo`, `sessions`,
`use`, `resume`, `stitch`, `film`, `export`, `usage`, `pick`, `models`, `connect`, `config`.
`film_commands`: `--storyboard` cells and `%sora film` / `export` with live views.
`connect_commands`: `%sora connect` / `models`, `--size`: what a relay sells, in words, and the
ping that generates nothing. `cell_text`: a cell's text with the user's `{variables}` filled in.

May import: every layer.
"""
