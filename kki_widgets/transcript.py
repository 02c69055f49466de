"""The old import path of the transcript (kept for users' code): it lives in
`kki_widgets.protocol.transcript` now."""

from .protocol.transcript import *  # noqa: F403
from .protocol.transcript import Generation, Transcript, parse_transcript  # noqa: F401
