"""The notebook's own files: its conversation, the request cache and the claims of what was paid.

A JSON snapshot with an fsynced journal beside it, frame images as content-addressed files, and
`atomic.replacing` (a temp file, then one rename) for everything written whole. Files in a
notebook folder are untrusted input: every read is bounded.

May import: `kki_widgets.protocol`.
"""
