"""The notebook's own files: its conversation, the request cache and the claims of what was paid.

A JSON snapshot with an fsynced journal beside it, frame images as content-addressed files, and
`atomic.replacing` (a temp file, then one rename) for everything written whole. Files in a
notebook folder are untrusted input: every read is bounded.

Where: `NotebookStore.for_notebook(path_or_none)` → `<notebook dir>/.kki/<notebook stem>.json`
(and `.journal`). The notebook is found from `KKI_NOTEBOOK`, `JPY_SESSION_NAME` or VS Code's
`__vsc_ipynb_file__`; a kernel with none of them (nbclient, `nbconvert --execute`, papermill)
keeps its conversations in memory (a `RuntimeWarning` says so) and shares only the
content-addressed request cache in `.kki/default.json`; scripts and terminal IPython use
`.kki/default.json`.

`format` (pure), format 2: conversations hold turns by ID (`put_turn`; a turn names its parent's
ID and stores only its own prompt message plus how many parent messages it sent); answers are
stored once in a content-addressed `answers` table shared with the request cache (keyed by a hash
of `(cache_identity, wire model, options, wire messages)`); paths inside the notebook folder are
relative. `inflate_conversation` gives back whole turns in order; a parent that does not come
earlier is dropped (no cycle survives loading). Format-1 files are migrated on read
(`migrate_v1`). A remix is checked against what its parent sent a moment ago (`SentMemo`) rather
than by rebuilding the chain, which was linear in the chain per write.

`journal`: each state change (one mutation, or one `batch()`) appends one JSON line of ops (put
turns, answers, a cache entry, a pending task, a counter, a claim; delete a conversation: data,
never code), fsynced under the `filelock` lock. Reading = snapshot + replay; the store keeps what
it read and re-reads only the lines another kernel appended (the snapshot's inode/size/mtime and
the journal's offset tell), or both files after another kernel compacted. Compaction (the
snapshot rewritten with `atomic.replacing`, then the journal removed) runs when the journal
outgrows the snapshot and `compact_min_bytes` (256 KB), or on `compact()`. Crash safety: the
snapshot records the last line it holds (`journal_seq`) and every op *sets* a value, so nothing
replays twice; a cut-off last line is ignored and cut before the next append; a bad line before
good ones moves the journal aside with a warning naming both paths (the good lines are kept).
Every line and snapshot is checked for the key before it is written (`SecretInStoreError`).

Bounds (damage is moved aside with a warning naming the file, where it went and the cap; the
notebook goes on): a snapshot over `NotebookStore.max_snapshot_bytes` (32 MiB, `fstat` before
reading), a journal over the same cap, one line over `Journal.max_line_bytes` (8 MiB), nesting
deeper than `journal.MAX_DEPTH` (64, checked without recursion), a `RecursionError`/`MemoryError`
from the JSON reader, and a snapshot or journal that is a symbolic link (opened with `O_NOFOLLOW`;
the link itself is renamed, its target never read or written). The lock needs `filelock>=3.20.3`
(lock files opened with `O_NOFOLLOW`); where locks fail (`ENOLCK`, NFS without lockd) the store
refuses with a `StoreError` naming the folder and the fix, rather than run unlocked.

Claims: `claims: {key: {id, owner: {host, pid, started}, sent_at, state, task_id, raw_url, sid,
conversation, prompt}}`, journal ops `claim`/`unclaim`. `claim(key, record)` is one locked
check-and-insert that also looks at the request cache; `update_claim` (with an expected owner, for
a take-over: a compare-and-set), `settle_claim` (removed with the cache entry in one line, or kept
as failed), `claim_state`. An older kki_widgets reading claim ops moves the journal aside as
damage (nothing is lost).

`frames`: `FrameFiles` writes an image data URL of a stored message (a parent's last frame: 18 KB
on the simulator, 1-2 MB on real relays) once to `kki_media/frames/<sha256>.<png|jpeg|webp|gif>`
(atomically, checked with `sniff`); the message keeps `{"file", "mime"}`; loading rebuilds the
same data URL, so cache keys and remix histories are byte-identical. Old stores with inline images
load as they are; a media folder that is a link keeps images inline.

`atomic.replacing`: a temp file next to the target, then one rename (fsynced when `durable`): the
store, frames, stitched clips, films, last frames, exports, the simulator's clips, the discovery
cache.

May import: `kki_widgets.protocol`.
"""
