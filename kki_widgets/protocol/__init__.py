"""The wire's vocabulary, pure: what relays send and what it means, with no I/O and no asyncio.

SSE decoding and bounded inflation of compressed answers, the transcript of a streamed answer
(`Generation`), the evidence an answer offers and the verdict on it, raw-data and task-record
answers, the relay's markdown ending, relay profiles (how options travel) and model lists, request
messages, media kinds from their first bytes, prices and charges in words, and the typed errors
every layer raises. Tested exhaustively (hypothesis splits text anywhere).

May import: nothing of kki_widgets outside this package.
"""
