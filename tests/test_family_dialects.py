"""The simulator's dialects of the issue 19 relay families (kki_widgets/simulator/families.py),
checked on their raw bytes, independently of the client's parser: each streams well-formed SSE
chat chunks in its family's shape, whose answer holds a playable mp4 the simulator serves (a
relative path resolved against the relay, like a browser would), or the family's failure with the
relay's reason.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin

import httpx
import pytest
from kki_testing import TEST_KEY

from kki_widgets.simulator import DIALECT_NAMES, Simulator
from kki_widgets.simulator.__main__ import build_parser
from kki_widgets.simulator.families import FAMILY_DIALECTS
from kki_widgets.simulator.script import POLICY_REASON

FAMILIES = [dialect.name for dialect in FAMILY_DIALECTS]
LINK = re.compile(r"""(?:src=["']|\]\(|：|^)(?P<url>(?:https?://|/)[^\s"'()<>]+)""", re.MULTILINE)


@pytest.fixture(scope="module")
def sim():
    with Simulator(queue_seconds=0, generate_seconds=0.2, step_seconds=0.05, seed=19) as server:
        yield server


def events(raw: bytes) -> tuple[list[dict], list[str]]:
    """SSE events split the plain way (blank line, `data:` lines): JSON chunks and other data."""
    chunks, others = [], []
    for block in raw.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
        if not data:
            continue
        try:
            chunks.append(json.loads(data))
        except ValueError:
            others.append(data)
    return chunks, others


def answer_of(sim, dialect: str, extra: str = "") -> tuple[list[dict], list[str], str, str]:
    body = {"model": "sora-2", "stream": True,
            "messages": [{"role": "user", "content": f"a fox [[dialect:{dialect}]]{extra}"}]}  # fmt: skip
    raw = httpx.post(sim.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {TEST_KEY}"},
                     timeout=60).content  # fmt: skip
    chunks, others = events(raw)
    deltas = [choice.get("delta") or {} for chunk in chunks for choice in chunk["choices"]]
    content = "".join(delta.get("content") or "" for delta in deltas)
    reasoning = "".join(delta.get("reasoning_content") or "" for delta in deltas)
    return chunks, others, content, reasoning


def test_every_family_is_a_dialect_the_command_line_serves():
    assert set(FAMILIES) <= set(DIALECT_NAMES)
    for name in FAMILIES:
        assert build_parser().parse_args(["--dialect", name]).dialect == name


@pytest.mark.parametrize("dialect", FAMILIES)
def test_family_streams_well_formed_chunks_with_a_playable_mp4(sim, dialect):
    chunks, others, content, _ = answer_of(sim, dialect)
    assert others == ["[DONE]"]
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["choices"] for chunk in chunks)
    assert sum(1 for chunk in chunks for choice in chunk["choices"] if choice["finish_reason"]) == 1
    links = [match["url"] for match in LINK.finditer(content)]
    assert links, content
    videos = [httpx.get(urljoin(sim.base_url, link), timeout=10) for link in dict.fromkeys(links)]
    assert any(v.status_code == 200 and v.headers["content-type"] == "video/mp4" and v.content[4:8] == b"ftyp"
               for v in videos), links  # fmt: skip


@pytest.mark.parametrize("dialect", FAMILIES)
def test_family_failure_carries_the_relays_reason(sim, dialect):
    _, others, content, reasoning = answer_of(sim, dialect, " [[fault:policy]]")
    assert others == ["[DONE]"]
    assert POLICY_REASON in content
    assert not re.search(r"\.mp4|/cdn/", content + reasoning)


def test_families_keep_their_relays_shapes(sim):
    # grok2api: progress inside <think> in content, the video as a path relative to the relay.
    _, _, grok, _ = answer_of(sim, "grok_think")
    assert grok.startswith("<think>视频已生成") and "100%</think>\n<video src=\"/cdn/" in grok
    # jimeng: '.' keep-alives in choices[0], the answer in [1], the stop in [2], no `created`.
    chunks, _, jimeng, _ = answer_of(sim, "jimeng")
    assert [c["choices"][0]["index"] for c in chunks][-2:] == [1, 2] and "." in jimeng
    assert not any("created" in chunk for chunk in chunks)
    assert "![video](http" in jimeng and ".mp4" not in jimeng  # an extension-less link
    # Qwen/wan: only the URL, 16 code points per delta.
    chunks, _, qwen, _ = answer_of(sim, "qwen_wan")
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"][0]["delta"].get("content")]
    assert qwen.startswith("http") and qwen.endswith(".mp4") and max(len(p) for p in pieces) == 16
    # sora2api fork: '[stage] (status) N% text' on the reasoning channel, STOP, then [DONE].
    chunks, others, sora, reasoning = answer_of(sim, "sora_staged")
    assert "[generation] (processing) " in reasoning and sora.startswith("```html\n<video src='")
    assert chunks[-1]["choices"][0]["finish_reason"] == "STOP" and others == ["[DONE]"]


def test_jimeng_failure_links_the_relays_web_page_and_names_the_task(sim):
    _, _, content, _ = answer_of(sim, "jimeng", " [[fault:fail]]")
    task_id = list(sim.tasks)[-1]
    assert content.count("⚠️ 视频生成过程中遇到问题: ") == 1 and f"历史记录ID: {task_id}" in content
    page = re.search(r"(http://\S+/web/\S+)\n", content)[1]
    assert httpx.get(page, timeout=10).headers["content-type"].startswith("text/html")  # a page, never the video
