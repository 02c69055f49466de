"""A conversation: turns, the messages for the next request, branching, takes, batches,
storyboards, spending and the budget; running, cancelling, resuming and replaying a turn; and the
claims that keep a paid request from being sent twice (claimed in the store before its first
byte; a rerun attaches to the claim).

May import: every layer below (`protocol`, `store`, `net`, `media`, `client`, `display`); never
the notebook front ends.
"""
