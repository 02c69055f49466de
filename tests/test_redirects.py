"""A redirect whose Location is malformed is an error that names the redirect and the host that
sent it, and quotes none of the answer (issue 19, item 6)."""

from __future__ import annotations

import pytest
from kki_testing import TEST_KEY, HostileRelay, sse_body

from kki_widgets.client.relay import RelayClient
from kki_widgets.media.downloads import MediaError, download
from kki_widgets.protocol.errors import RelayError, StreamInterrupted

TASK = "task_01redirectredirect000000"
MALFORMED = "http://[::1/x-SECRET-LOCATION"


def test_a_malformed_redirect_from_the_relay_is_named():
    with HostileRelay(lambda r: (302, {"Location": MALFORMED}, b"SECRET-BODY")) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=2)
        with pytest.raises(RelayError) as caught:
            client.generate("a fox")
        assert len(relay.paths("POST")) == 1  # a malformed redirect is not retried
    message = str(caught.value)
    assert "redirect" in message and "127.0.0.1" in message and "Location" in message
    assert "SECRET" not in message and "Unexpected" not in message


def test_a_malformed_redirect_from_the_raw_data_url_is_named():
    def answer(request):
        if request["method"] == "POST":
            return 200, {"Content-Type": "text/event-stream"}, sse_body([f"> ID: `{TASK}`\n"], done=False)
        return 302, {"Location": MALFORMED}, b"SECRET-BODY"

    with HostileRelay(answer) as relay:
        client = RelayClient(base_url=relay.base_url, api_key=TEST_KEY, max_retries=0, poll_interval=0.01)
        with pytest.raises(StreamInterrupted) as caught:
            list(client.stream("a fox"))
    message = str(caught.value)
    assert "raw-data URL at 127.0.0.1" in message and "redirect" in message and caught.value.task_id == TASK
    assert "SECRET" not in message


def test_a_malformed_redirect_from_a_media_host_is_named(tmp_path):
    redirect = (302, {"Location": MALFORMED}, b"SECRET-BODY")
    with HostileRelay(lambda r: redirect) as host, pytest.raises(MediaError) as caught:
        download(f"{host.origin}/v.mp4", tmp_path, relay_url=host.base_url, retries=0)
    message = str(caught.value)
    assert "redirect" in message and "127.0.0.1" in message and "SECRET" not in message
