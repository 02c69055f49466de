"""An embedded relay that speaks the continuous-video wire format, renders real media and
misbehaves on demand. It is the package's backend when no API key is configured, and every test
and demo runs against it.

Three ways to start one::

    python -m kki_widgets.simulator --port 0           # prints http://127.0.0.1:PORT/v1
    with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0) as sim:
        sim.base_url                                    # ends with /v1
    embedded_base_url()                                 # process-wide, started lazily

Any non-empty ``Authorization: Bearer KEY`` is accepted unless ``Simulator(api_key=...)`` fixes
one. Media (H.264 mp4 + webp thumbnail, ~2 s, showing the prompt) is served under ``/cdn/``;
``/source/{task_id}`` gives a task's raw-data JSON (generations finish even when the client
disconnects), ``/web/{task_id}`` an HTML page. An image-to-video request (a ``data:`` PNG/JPEG
image part) gets a clip that opens on that image and fades into its scene, as a shot continued
from a frame does on a real relay.

Options, like a real chat relay
-------------------------------
Extra top-level JSON fields (``orientation``, ``duration``) are ignored by default: orientation and
length come from the model's name (``sora2-landscape-15s``, ``sora_video2-hd-portrait-15s``,
``veo_3_1_t2v_fast_landscape``, ``veo_3_1-landscape-fast``; combinations a family does not sell
get 404 ``model_not_found``), else from the prompt's words ("16:9", "横屏", "vertical", "15 seconds",
"duration: 5 seconds", "10s", "15秒"), else the model's default. The spec echoes what was chosen.
``Simulator(honour_json_options=True)`` (``--honour-json-options``) reads the fields instead.
See :mod:`.catalog`.

Faults
------
Ask for faults for the whole server with ``Simulator(faults=["crlf", "stall:2"])`` (or
``--fault``), or per request with the header ``X-Sim-Fault: name[,name]`` and/or a marker in the
prompt: ``[[fault:name]]`` / ``[[fault:name1,name2]]`` (the marker stays in the echoed prompt).
Unknown names are answered with HTTP 400 ``code: unknown_fault``.

=====================  ============================================================================
``cut_after_task_id``  the stream stops right after the delta with the task ID, without the chunked
                       terminator (httpx raises ``RemoteProtocolError``); the task keeps running,
                       poll ``/source/{task_id}``
``cut_after:N``        the same cut after N SSE events (the role chunk is event 1; 0 = no event)
``cut_mid_progress``   the same cut after the first progress percentage
``stall:SECONDS``      after the task ID nothing at all is sent for SECONDS (no keep-alives),
                       then the stream goes on
``status:CODE``        answer 401, 402 (``insufficient_quota``), 429 (``Retry-After: 1``), 500,
                       502 or 503 with an OpenAI error body; nothing is submitted (not paid)
``fail_first:N``       server level only: the first N chat requests get 503, then normal service
``fail``               ``Generation failed`` + ``Failure reason: …`` in the text midway
``policy``             fails with "This content may violate our content policies."
``capacity``           fails while queuing with "No available capacity, …"
``malformed``          non-JSON ``data:`` lines interleaved with the real events
``crlf``               CRLF line endings
``keepalive``          ``: ping`` comment lines between events
``pretty``             indented multi-line JSON, one ``data:`` line per JSON line (valid SSE)
``pretty_raw``         indented JSON with only the first line prefixed, as printed on the relay page
``error_chunk``        after the task ID a chunk ``{"error": {"message": …}}`` then ``[DONE]``
                       (the task itself keeps running)
``no_pricing``         ``/api/pricing`` and ``/v1/dashboard/billing/*`` answer 404, like a relay
                       without a price list or billing (prices then come from configuration)
``split``              deltas split at random points (inside URLs, numbers, the task ID) and each
                       event's bytes split across two HTTP chunks (even inside a UTF-8 character)
=====================  ============================================================================

Model lists
-----------
``Simulator(catalog="sora2api")`` (or ``--catalog``; also ``flow2api``, ``sora_video2``,
``veo_3_1``, ``plain``) lists on ``GET /v1/models`` and serves exactly one relay family's model
names, as that relay lists them (flow2api's image models included), so a client that reads the
list (the package's discovery) meets each family; any other name is a 404 ``model_not_found``.

Dialects
--------
Real relays word their answers differently; a dialect reproduces one family byte for byte in
shape (the sources are kept as fixtures in ``tests/fixtures/relays/``). Pick it for the whole
server with ``Simulator(dialect="html_fence")`` (or ``--dialect``), or per request with the header
``X-Sim-Dialect: name`` or a ``[[dialect:name]]`` marker in the prompt (the header wins). Unknown
names are answered with HTTP 400 ``code: unknown_dialect``. Faults combine with every dialect:
``fail``/``policy``/``capacity`` fail in the dialect's own wording; task-ID faults (cuts, stall,
``error_chunk``) act after the dialect's first words where it shows no task ID. The media are the
same real mp4/webp; some dialects link the mp4 at an extension-less signed URL
(``/cdn/video/STEM?…&Signature=…`` or ``/cdn/files/STEM/raw?…&sig=…``) that answers 403 without
its signature, as a storage host does.

================  ==============================================================================
``seed``          (default) the relay's API page: JSON spec, ``> ID: `task_…```, ``Progress 36..``,
                  ``Generation Complete ✅``, ``sid``, ``[Play Online▶️](….mp4)``; failure
                  ``Generation failed ❌`` + ``Failure reason: …``
``chinese``       the same in Chinese labels: ``任务ID``, ``排队中``, ``生成中``, ``🏃 进度 36..``,
                  ``生成完成 ✅``, ``[▶️ 在线观看](…) | [⏬ 下载视频](…)``; failure ``❌ 生成失败: …``
``html_fence``    (sora2api) no task ID; status and ``Video Generation Progress: 37%`` only in
                  ``delta.reasoning_content``; the answer is ```` ```html <video src='…/raw?…&sig=…'
                  controls></video>``` ```` on a chunk with ``finish_reason: "STOP"`` and no
                  ``[DONE]``; failure: the reason in reasoning, then ``❌ 生成失败: …``, ``[DONE]``
``watermark_free`` (sora2api, watermark-free mode) ``html_fence``, and on completion the Sora share ID
                  as ``Post ID: s_…`` in reasoning: the only handle sora2api remixes by
``video_tag``     (flow2api, Veo) no task ID; ``生成进度: 23%`` in reasoning; the answer is a bare
                  ``<video src='…/cdn/video/STEM?…&Signature=…' controls style='max-width:100%'>``;
                  failure ``❌ 视频生成失败: …，请重试`` in reasoning, then the error JSON written raw
                  (no ``data:``) glued to ``data: [DONE]``
``click_here``    no task ID; ``⌛️ 任务正在队列中…``, ``🏃 进度:36.0%`` lines, then
                  ``> ✅ Video generated successfully, [click here](….mp4) to view video~~~``;
                  failure ``❌ Generation failed: …``
``bare_url``      no task ID; status lines, then the video as a bare ``…/raw?se=…&sig=…`` URL on the
                  last line; failure ``❌ 生成失败: …``
``run_together``  (Sora2mb) no task ID; ``🎬 开始生成视频...✅ 视频生成完成📤 …🔗 …`` with no newlines,
                  ending in a bare extension-less signed URL; failure ``❌ 生成失败: …``
``grok_think``    (grok2api, ``families.py``) progress ``<think>视频已生成54%`` … ``100%</think>`` in
                  content, then ``<video src="/cdn/….mp4" …>`` with a path relative to the relay;
                  failure ``Error: …`` (the think block left open) with ``finish_reason: "stop"``
``jimeng``        (jimeng/Seedance) two status lines and ``.`` keep-alives in ``choices[0]``, the
                  answer ``✅ 视频生成完成！ ![video](extension-less signed URL)`` in ``choices[1]``,
                  the stop in ``choices[2]``, no ``created``; failure ``⚠️ 视频生成过程中遇到问题: …``
                  with a link to the relay's web page and ``历史记录ID``, stop in ``choices[1]``
``qwen_wan``      (Qwen chat, wan) only the bare video URL, in 16-character deltas; failure
                  ``Error: …``
``sora_staged``   (a sora2api fork) ``[generation] (processing) 37% Video generation progress: 37%`` in
                  reasoning, ```` ```html <video src='…/raw?…'>``` ```` with ``STOP``, then ``[DONE]``;
                  failure ``[error] (error) Content policy violation: …`` and ``❌ 生成失败: …``
================  ==============================================================================

Model names decide how a request is read, as at the relays that sell them: sora2api's names
(``sora2-landscape-15s``…) read only the last message and remix the share ID written in it (never
the history); flow2api's text-to-video names drop an image with the relay's ``⚠️ … 将忽略图片``
line; its image-to-video names fail without one.

Stream faults (cuts, stall, framing) only apply to ``stream: true`` requests; a non-streaming
request gets the whole markdown (including a ``fail``/``policy``/``capacity`` failure) at once.
Failed generations (``fail``/``policy``/``capacity``) count as submissions: some relays charge
for them, and the simulator charges them at the price it publishes (``Simulator(prices=...,
balance=...)``, see ``billing.py``). Everything random (IDs, progress, split points) follows ``Simulator(seed=...)``.
A repeated request is a new generation with its own clip, as a real model's would be (takes);
``Simulator(variants=N)`` (``--variants N``) cycles through N clips instead, so a benchmark that
repeats prompts measures streaming, not ffmpeg.

Importing this package is cheap: starlette and uvicorn are imported when a server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .chat_request import DEFAULT_MODELS
from .dialect_registry import DIALECT_NAMES, DialectError
from .embedded import embedded_base_url, embedded_simulator
from .faults import ALL_FAULT_NAMES, FaultError, FaultPlan, parse_faults

if TYPE_CHECKING:
    from .server import Simulator

__all__ = [
    "ALL_FAULT_NAMES",
    "DEFAULT_MODELS",
    "DIALECT_NAMES",
    "DialectError",
    "FaultError",
    "FaultPlan",
    "Simulator",
    "embedded_base_url",
    "embedded_simulator",
    "parse_faults",
]


def __getattr__(name: str) -> Any:
    if name == "Simulator":
        from .server import Simulator

        return Simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
