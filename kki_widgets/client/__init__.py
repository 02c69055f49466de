"""The relay over HTTP: settings and the key, the streaming client, retries and recovery.

`config` (settings from arguments or the environment; the masked key), `redact` (the key found
in untrusted text), `relay` (the client: send, read, retry, judge the ending on evidence, recover
by task ID), `http_errors` (an error answer as a typed error), `http_backend` and `fair_share`
(the client's own sockets and fair turns on the event loop), `loop` (the private event-loop
thread of the sync API), `discovery` (what a relay sells: its model list and prices, cached per
user).

May import: `kki_widgets.protocol`, `kki_widgets.store`, `kki_widgets.net`, `kki_widgets.media`,
`kki_widgets.simulator` (only to start the embedded simulator when no key is set).
"""
