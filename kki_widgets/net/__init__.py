"""The network's doors, shared by the media layer and the relay client: which hosts a URL taken
from relay text may reach (`addresses`: the address policy, checked at connect time on the
resolved address), and httpx transports over httpcore pools built through public API only
(`http_transport`).

May import: `kki_widgets.protocol`.
"""
