"""A conversation: turns, the messages for the next request, branching, takes, batches,
storyboards, spending and the budget; running, cancelling, resuming and replaying a turn; and the
claims that keep a paid request from being sent twice (claimed in the store before its first
byte; a rerun attaches to the claim).

Modules: `session` (`Conversation`, the orchestrator; re-exports `Turn`, `TurnHandle`,
`TakesHandle`), `turn` (one prompt and its video; no I/O), `turn_request` (a new turn's request
decided, pure), `turn_media` (keep video + thumbnail; a turn's clip for films and last frames),
`saved_turns` (the store's view: IDs, parent IDs, only changes), `turn_claims` and `claims` (claim
before sending; what a rerun does with a claim, pure), `takes` (pure), `batch`, `spending`
(prices, reservations, balance, the relay's published facts), `budget`, `storyboard`.

`Turn`: `index, prompt, options, parent, generation, status, cached, path, thumbnail_path,
messages` (the wire messages, a profile's words included, so they are shown, sent back verbatim
on remixes and part of the cache key), `error, created_at, finished_at, cache_key, cell_id,
warnings, estimate, cost, cost_note, take, takes, take_group, picked, note`; `.video_url` prefers
the local copy; `.sent_prompt`; `.cost_text` is the one cost phrase every front end shows.
`turn.follow_blocker(turn)`: why a turn's task cannot be followed again (no task ID, or no
raw-data link from the relay), or None; the widget's Resume button and a bare `%sora resume`
both ask it (`%sora resume TASK_ID` adopts an ID the user gives, at the seed's `/source/ID`).

`Conversation(model=None, client=None, store=…, name="default", media_dir=…, *, orientation,
duration, max_history, profile, prices, budget, claim_window=24 h, **client_options)`:
`send(prompt, takes=1, **options)` (blocking; a list for takes > 1), `asend`, `start` →
`TurnHandle` / `TakesHandle`, `turns`, `messages`, `chain`, `branch(i)`, `reset()`, `undo()`,
`cancel(i=None)`, `retry`, `resume(task_id)`, `stitch(path)`, `film()`/`export()` (thin delegates
to `media`), `pick(turn)`, `takes_of(turn=None)`, `estimate(count, takes=1, **options)`,
`usage()`, `relay` (a `client.discovery.RelayDescription`), `can_remix(model)`,
`subscribe(callback) -> unsubscribe` (called with the `Turn` on every change), `abatch(prompts,
concurrency=3)` / `batch(...)` → `display.views.Gallery` (a live "n / N clips ready" counter; the
total estimate printed first; prompts the budget refuses are listed in `gallery.refused`).
Options inherit: explicit > the parent's > the conversation's. `_prepare` (with `turn_request`)
builds the wire request once; the cache key is `(settings.cache_identity, wire model, asked
options, wire messages)` and exactly that is sent. `_drive` turns every unexpected exception into
a failed turn with its type, a redacted reason and (with a task ID) how to resume: a turn is never
left "queued" or "generating".

Where turns run: `start()`/`asend()` on the caller's loop (the kernel's, so other cells keep
running); a blocking call (`send()`, the `%%sora` wait) schedules the turn on the private loop
thread (`client.loop`) and waits there; Ctrl-C stops the wait. Subscribers may be called from
either thread. nest-asyncio is not a dependency: nothing needs a nested loop.

Continuity: `send(..., continue_from="last_frame")` sends `[user: prompt + parent's last frame]`
with no history and records it in `Turn.options` (retries and cache keys follow). When the profile
cannot remix the model, or sora2api's parent has no share ID, the frame is used and `Turn.note`
says why (sending the history would bill an unrelated video). `storyboard.Storyboard(conv, shots,
parent=, cell_id=, continue_from=, **options)`: `run()` chains the shots by parent and stops at a
failure; `owns(turn)`; `board_parent(turns, cell_id)` anchors a rerun.

Claims (`turn_claims._begin_one`, words in `claims`): a rerun of a claimed request never sends it
again on its own. Followed by this kernel → waits for that turn. Held by another live kernel on
this host (host, pid, the process's start time from `/proc`, so a reused pid is not taken for
it) → waits through the store ("waiting for the generation another kernel (pid N) started at
HH:MM (no new charge)"). Has a task ID and its kernel is gone or elsewhere → takes the claim over
(one locked compare-and-set: one follower wins) and follows the task. No task ID and its kernel
gone → nothing is sent; the turn fails, saying it may have been charged and that `%%sora --force`
or Retry sends it again. Failed at the relay, or older than `claim_window` (24 h) → nothing is
sent. A new kernel's background fetch of unfinished turns, and a `VideoChat` made after a restart,
take claims over too. `KKI_TEST_PAUSE_AT` stops the process at a named step (for the kill tests).

Money: `budget.Budget(limit)`: `reserve(estimates, label, model)` (all or nothing, raises
`BudgetExceeded`) and `settle_part(reservation, part, charged)`, thread-safe; the estimate is
reserved under a lock before anything is sent, so batches, widgets and threads sharing one
`Budget` cannot pass the cap together; the takes of a request are reserved at once. With a budget,
an unknown price refuses the request. A failed generation the relay accepted counts as charged
unless the price says otherwise. The ledger counts this kernel's sends; spend per model across
kernels is summed from the store's turns. `Turn.estimate` is set before sending, `cost`/`cost_note`
when the turn ends (`protocol.pricing.charge_for`); cache replays cost 0.

Takes: `takes=N` makes N turns sharing `take_group` (the index of take 1) with `take`/`takes`;
take k > 1 is cached under the request's key plus `take: k` (take 1 shares the plain entry). The
head never moves take by take: once all ended it goes to the picked take, else the first
completed one, so a rerun continues the same take and every request is again a cache hit.

May import: every layer below (`protocol`, `store`, `net`, `media`, `client`, `display`); never
the notebook front ends.
"""
