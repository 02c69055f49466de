"""The simulated relay: a Starlette app served by uvicorn on a daemon thread with its own loop.

Routes (``ORIGIN`` is ``http://HOST:PORT``; the OpenAI base URL is ``ORIGIN/v1``):

- ``POST /v1/chat/completions`` — streams (``stream: true``) or returns a generation.
- ``GET /v1/models`` — the configured model list (OpenAI list shape); ``catalog="sora2api"``
  (``flow2api``, ``sora_video2``, ``veo_3_1``, ``plain``) lists and serves one family's names
  exactly as that relay lists them (`catalog.MODEL_LISTS`), so discovery meets each dialect.
- ``GET /source/{task_id}`` — raw-data JSON of a task; ``GET /web/{task_id}`` — an HTML page.
- ``GET /cdn/{name}`` — rendered ``.mp4``/``.webp`` with HTTP Range support; the same mp4 at the
  extension-less signed URLs of some dialects: ``/cdn/video/{stem}?…&Signature=…`` and
  ``/cdn/files/{stem}/raw?…&sig=…`` (403 without the right signature, like a storage host).
- ``GET /health``.

The Authorization header is checked and then forgotten: it is never logged nor stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dialect_registry, dialects, script
from .answer_stream import AnswerStream, SimulatedCut
from .billing import DEFAULT_BALANCE, Billing
from .catalog import MODEL_LISTS
from .chat_request import DEFAULT_MODELS, ApiError, ChatRequest, parse_chat_request
from .faults import ERROR_STATUSES, FaultError, FaultPlan, faults_in_text, parse_faults
from .first_frame import first_image, keep_frame
from .render import Renderer
from .tasks import Generation, Timing, run_generation

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

FAULT_HEADER = "X-Sim-Fault"
# Where a simulator given no ``media_dir`` keeps its clips, else in a temp folder of its own: a
# folder many simulators share (clips are named by everything they show, so a cached clip is the
# one a render would give), where each distinct clip renders once.
MEDIA_DIR_VARIABLE = "KKI_SIMULATOR_MEDIA_DIR"
MEDIA_NAME = re.compile(r"^[0-9a-f]{30}\.(mp4|webp)$")
MEDIA_STEM = re.compile(r"^[0-9a-f]{30}$")
MEDIA_TYPES = {"mp4": "video/mp4", "webp": "image/webp"}


def _is_simulated_cut(error: BaseException | None) -> bool:
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SimulatedCut):
            return True
        pending += [current.__cause__, current.__context__, *getattr(current, "exceptions", ())]
    return False


class _HideSimulatedCuts(logging.Filter):
    """uvicorn logs every aborted response as an error; deliberate cuts are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_simulated_cut(record.exc_info[1]))


_log_filter_installed = False


def _install_log_filter() -> None:
    global _log_filter_installed
    if not _log_filter_installed:
        logging.getLogger("uvicorn.error").addFilter(_HideSimulatedCuts())
        _log_filter_installed = True


def _completion(content: str, chat: ChatRequest, completion_id: str, created: int) -> Response:
    """A non-streaming answer: the whole markdown in one chat completion."""
    from starlette.responses import JSONResponse

    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": chat.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": len(chat.prompt.split()),
                "completion_tokens": len(content.split()),
                "total_tokens": len(chat.prompt.split()) + len(content.split()),
            },
        }
    )


def _error_response(error: ApiError) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _checked_variants(variants: int) -> int:
    """How many clips repeats of one request cycle through; 0: every repeat is a new clip.

    A benchmark that measures streaming sets 1, so repeats reuse one rendered clip and no
    ffmpeg competes for the CPU it measures."""
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 0:
        raise ValueError(f"variants must be an integer >= 0 (0: every repeat differs), got {variants!r}")
    return variants


def _media_folder(media_dir: str | Path | None) -> tuple[Path, bool]:
    """(the folder, whether the simulator owns it and removes it on stop)."""
    given = media_dir if media_dir is not None else os.environ.get(MEDIA_DIR_VARIABLE) or None
    if given is None:
        return Path(tempfile.mkdtemp(prefix="kki-simulator-")), True
    return Path(given), False


def _catalog_models(catalog: str) -> tuple[str, ...]:
    """A relay of one family: it lists (GET /v1/models) and serves exactly these names."""
    if catalog not in MODEL_LISTS:
        raise ValueError(f"catalog must be one of {', '.join(MODEL_LISTS)}, got {catalog!r}")
    return MODEL_LISTS[catalog]


class Simulator:
    """A local relay speaking the wire format of the real one; see the package docstring.

    ``with Simulator(queue_seconds=0, generate_seconds=0, step_seconds=0) as sim:`` gives a
    running server; ``sim.base_url`` is the OpenAI base URL (ends with ``/v1``).
    ``media_dir``: where rendered clips are kept and served from; by default
    ``$KKI_SIMULATOR_MEDIA_DIR``, else a temp folder removed on stop.
    For tests: ``sim.requests`` (parsed chat request bodies, never headers), ``sim.submissions``
    (generations accepted, i.e. paid), ``sim.tasks`` (task ID → :class:`Generation`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        media_dir: str | Path | None = None,
        queue_seconds: float = 1.0,
        generate_seconds: float = 3.0,
        step_seconds: float = 0.3,
        speed: float = 1.0,
        faults: str | Iterable[str] | None = None,
        seed: int | None = None,
        clip_seconds: float = 2.0,
        honour_json_options: bool = False,
        dialect: str | None = None,
        prices: dict[str, object] | None = None,
        balance: float | None = DEFAULT_BALANCE,
        variants: int = 0,
        catalog: str | None = None,  # one family's model list (see the module docstring)
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string such as '127.0.0.1', got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 (any free port) to 65535, got {port!r}")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key must be a non-empty string, or None to accept any key")
        self.models = tuple(models if catalog is None else _catalog_models(catalog))
        # Like a real relay: name families served unless a list is given; JSON options ignored.
        self.serve_families = models is DEFAULT_MODELS and catalog is None
        self.honour_json_options = bool(honour_json_options)
        if not self.models or not all(isinstance(model, str) and model for model in self.models):
            raise ValueError(f"models must be a non-empty list of model names, got {models!r}")
        self.host, self.port = host, port
        # Only a digest of the fixed key is kept, so no repr or dump of the simulator shows it.
        self._api_key_digest = hashlib.sha256(api_key.encode()).digest() if api_key else None
        self.timing = Timing(queue_seconds, generate_seconds, step_seconds).scaled(speed)
        self.faults: FaultPlan = parse_faults(faults)
        self.dialect: dialects.Dialect = dialect_registry.get_dialect(dialect)
        self._rng = random.Random(seed)
        self.media_dir, self._owns_media_dir = _media_folder(media_dir)
        self.renderer = Renderer(self.media_dir, clip_seconds=clip_seconds)
        # Prices and the key's balance (see billing.py); fault ``no_pricing`` hides them.
        self.billing = Billing(prices, balance)

        self.requests: list[Any] = []
        self.submissions = 0
        self.tasks: dict[str, Generation] = {}
        self._generated: dict[str, int] = {}  # clip identity → generations so far
        self.variants = _checked_variants(variants)
        self._chat_requests = 0
        self._runners: set[asyncio.Task[None]] = set()
        self._app: Starlette | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._startup_error: BaseException | None = None
        self._bound_port: int | None = None

    def __repr__(self) -> str:
        state = self.base_url if self._bound_port else "stopped"
        return f"<Simulator {state} tasks={len(self.tasks)} submissions={self.submissions}>"

    # -- addresses -------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("the simulator is not running: call start() or use it as a context manager")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._bound_port}"

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> Simulator:
        """Serve on a daemon thread; returns once the socket accepts connections."""
        if self._thread is not None:
            return self
        import uvicorn

        _install_log_filter()
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_config=None,  # never reconfigure the host application's (or Jupyter's) logging
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._startup_error = None
        thread = threading.Thread(target=self._serve, args=(server,), name="kki-simulator", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self._thread = None
                cause = self._startup_error
                raise RuntimeError(
                    f"the simulator could not listen on {self.host}:{self.port}"
                    + (f" ({type(cause).__name__}: {cause})" if cause else " (timed out)")
                    + "; pick another --port or 0 for any free port"
                ) from cause
            time.sleep(0.005)
        self._bound_port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def _serve(self, server: Any) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        except BaseException as error:  # uvicorn calls sys.exit(1) when it cannot bind
            self._startup_error = error
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            # Let renders already running in worker threads finish before the loop goes away.
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, end running generations and delete a media folder we created."""
        thread, server = self._thread, self._server
        if thread is not None and server is not None:
            server.should_exit = True
            thread.join(timeout)
        self._thread = None
        self._bound_port = None
        if self._owns_media_dir:
            shutil.rmtree(self.media_dir, ignore_errors=True)

    # -- the ASGI app ----------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        if self._app is None:
            from starlette.applications import Starlette
            from starlette.routing import Route

            self._app = Starlette(
                routes=[
                    Route("/v1/chat/completions", self._chat, methods=["POST"]),
                    Route("/v1/models", self._models, methods=["GET"]),
                    Route("/source/{task_id}", self._source, methods=["GET"]),
                    Route("/web/{task_id}", self._web, methods=["GET"]),
                    Route("/cdn/{name}", self._cdn, methods=["GET", "HEAD"]),
                    Route("/cdn/video/{stem}", self._signed_cdn, methods=["GET", "HEAD"]),
                    Route("/cdn/files/{stem}/raw", self._signed_cdn, methods=["GET", "HEAD"]),
                    Route("/health", self._health, methods=["GET"]),
                    Route("/api/pricing", self._pricing, methods=["GET"]),
                    Route("/v1/dashboard/billing/{what}", self._billing, methods=["GET"]),
                ]
            )
        return self._app

    def _check_auth(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY' "
                "(any non-empty key works with the simulator, e.g. 'sk-simulator-any-key').",
                code="invalid_api_key",
            )
        digest = self._api_key_digest
        if digest is not None and not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), digest):
            raise ApiError(
                401,
                "Incorrect API key provided. Use the key this simulator was started with.",
                type="authentication_error",
                code="invalid_api_key",
            )

    def _request_faults(self, request: Request, chat: ChatRequest) -> FaultPlan:
        specs = faults_in_text(chat.prompt)
        header = request.headers.get(FAULT_HEADER)
        if header:
            specs.append(header)
        try:
            plan = parse_faults(specs)
        except FaultError as error:
            raise ApiError(400, f"bad fault request: {error}", code="unknown_fault", param=FAULT_HEADER) from None
        if plan.fail_first is not None:
            raise ApiError(
                400, "fail_first is a server-level fault: Simulator(faults=['fail_first:N'])", code="unknown_fault"
            )
        return self.faults.merged(plan)

    def _request_dialect(self, request: Request, chat: ChatRequest) -> dialects.Dialect:
        name = request.headers.get(dialects.HEADER) or dialect_registry.dialect_in_text(chat.prompt)
        if not name:
            return self.dialect
        try:
            return dialect_registry.get_dialect(name)
        except dialects.DialectError as error:
            raise ApiError(400, f"bad dialect request: {error}", code="unknown_dialect", param=dialects.HEADER) from None

    async def _chat(self, request: Request) -> Response:
        from starlette.responses import StreamingResponse

        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error_response(ApiError(400, "the request body is not valid JSON", code="invalid_json"))
        self.requests.append(body)
        self._chat_requests += 1
        try:
            chat, plan, dialect = self._admit(request, body)
        except ApiError as error:
            return _error_response(error)
        rng = random.Random(self._rng.getrandbits(64))
        task = self._submit(request, body, chat, plan, dialect, rng)
        completion_id, created = script.new_completion_id(rng), int(time.time())
        if not chat.stream:
            await task.done.wait()  # an Event, so a client leaving does not cancel the task
            return _completion(task.content, chat, completion_id, created)
        return StreamingResponse(
            AnswerStream(plan, rng, completion_id, created, chat.model).events_of(task),
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _admit(self, request: Request, body) -> tuple[ChatRequest, FaultPlan, dialects.Dialect]:
        """The request read and checked as a relay would (key, model, options), and the faults
        and dialect it is answered with; an `ApiError` says why not."""
        if self.faults.fail_first is not None and self._chat_requests <= self.faults.fail_first:
            raise ApiError(503, "The service is temporarily overloaded (simulated fail_first).",
                           type="server_error", code="service_unavailable")  # fmt: skip
        self._check_auth(request)
        chat = parse_chat_request(
            body, self.models, families=self.serve_families,
            honour_json_options=self.honour_json_options,
        )
        plan = self._request_faults(request, chat)
        dialect = self._request_dialect(request, chat)
        if plan.status is not None:
            error_type, code, message = ERROR_STATUSES[plan.status]
            headers = {"Retry-After": "1"} if plan.status == 429 else {}
            raise ApiError(plan.status, message, type=error_type, code=code, headers=headers)
        return chat, plan, dialect

    def _submit(self, request: Request, body, chat: ChatRequest, plan: FaultPlan, dialect, rng) -> Generation:
        """Accept (and charge for) the generation and start it as its own task: it completes
        even when the client goes away."""
        task = Generation(
            id=script.new_task_id(rng),
            sid=script.new_sid(rng),
            parent_sid=chat.parent_sid,
            prompt=chat.prompt,
            chain=chat.chain,
            model=chat.model,
            orientation=chat.orientation,
            duration=chat.duration,
            origin=f"{request.url.scheme}://{request.url.netloc}",
            images=chat.images,
            dialect=dialect,
            first_frame=keep_frame(first_image(body), self.media_dir),
        )
        # Same request again (a take, a forced retry): a different generation, like a real model.
        identity = task.clip_request().key(0)
        made = self._generated.get(identity, 0)
        self._generated[identity] = made + 1
        task.variant = made % self.variants if self.variants else made
        self.tasks[task.id] = task
        self.submissions += 1
        self.billing.charge(chat.model, chat.duration)
        failure = "capacity" if plan.capacity else "policy" if plan.policy else "fail" if plan.fail else None
        runner = asyncio.ensure_future(
            run_generation(task, timing=self.timing, rng=rng, render=self.renderer.render, failure=failure)
        )
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)
        return task

    async def _models(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            self._check_auth(request)
        except ApiError as error:
            return _error_response(error)
        data = [{"id": model, "object": "model", "created": 1760000000, "owned_by": "kki-simulator"}
                for model in self.models]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    def _task_or_error(self, request: Request) -> Generation | ApiError:
        task_id = request.path_params["task_id"]
        task = self.tasks.get(task_id)
        if task is None:
            return ApiError(404, f"no task with ID {task_id!r} on this simulator", code="task_not_found",
                            param="task_id")  # fmt: skip
        return task

    async def _source(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        task = self._task_or_error(request)
        if isinstance(task, ApiError):
            return _error_response(task)
        return JSONResponse(task.to_raw_data(), headers={"Cache-Control": "no-store"})

    async def _web(self, request: Request) -> Response:
        from starlette.responses import HTMLResponse

        task = self._task_or_error(request)
        if isinstance(task, ApiError):
            return HTMLResponse(f"<!doctype html><title>Not found</title><p>{html.escape(task.message)}</p>", 404)
        e = html.escape
        media = ""
        if task.video_url:
            media = (
                f'<video controls loop muted autoplay playsinline src="{e(task.video_url)}"'
                f' poster="{e(task.thumbnail_url or "")}" style="max-width:100%"></video>'
                f'<p><a href="{e(task.video_url)}">{e(task.video_url)}</a></p>'
            )
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(task.id)}</title>
<meta http-equiv="refresh" content="{5 if not task.done.is_set() else 3600}"></head>
<body style="font-family:sans-serif;max-width:40em;margin:2em auto">
<h1>{e(task.id)}</h1>
<p>Status: <b>{e(task.status)}</b> · progress {task.progress}% · model {e(task.model)}
· {e(task.orientation)} · {task.duration} s</p>
<p>Prompt: {e(task.prompt)}</p>
{f"<p>Continues: {e(task.parent_sid)}</p>" if task.parent_sid else ""}
{f"<p>Error: {e(task.error)}</p>" if task.error else ""}
{media}
<pre style="white-space:pre-wrap">{e(task.content)}</pre>
</body></html>"""
        return HTMLResponse(page)

    async def _cdn(self, request: Request) -> Response:
        from starlette.responses import FileResponse, JSONResponse

        name = request.path_params["name"]
        path = self.media_dir / name
        if not MEDIA_NAME.match(name) or not path.is_file():
            return JSONResponse(ApiError(404, f"no media named {name!r}", code="not_found").body(), 404)
        return FileResponse(path, media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
                            headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip

    async def _signed_cdn(self, request: Request) -> Response:
        """A rendered mp4 at an extension-less signed URL: the signature is checked like a
        storage host would, so a client that drops the query string gets no video."""
        from starlette.responses import FileResponse, JSONResponse

        stem = request.path_params["stem"]
        path = self.media_dir / f"{stem}.mp4"
        if not MEDIA_STEM.match(stem) or not path.is_file():
            return JSONResponse(ApiError(404, f"no media named {stem!r}", code="not_found").body(), 404)
        given = request.query_params.get("Signature") or request.query_params.get("sig") or ""
        if not hmac.compare_digest(given, dialects.signature(stem)):
            return JSONResponse(ApiError(403, "signature does not match", code="access_denied").body(), 403)
        return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})

    async def _health(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        running = sum(1 for task in self.tasks.values() if not task.done.is_set())
        return JSONResponse({"status": "ok", "tasks": len(self.tasks), "running": running,
                             "submissions": self.submissions, "renders": self.renderer.renders})  # fmt: skip

    # -- prices and balance (billing.py) ----------------------------------------------------

    def _pricing_hidden(self, request: Request) -> bool:
        header = request.headers.get(FAULT_HEADER) or ""
        return self.faults.no_pricing or "no_pricing" in header

    async def _pricing(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if self._pricing_hidden(request):
            return JSONResponse(ApiError(404, "not found", code="not_found").body(), 404)
        return JSONResponse(self.billing.pricing_answer())

    async def _billing(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        what = request.path_params["what"]
        if self._pricing_hidden(request) or what not in ("subscription", "usage"):
            return JSONResponse(ApiError(404, "not found", code="not_found").body(), 404)
        try:
            self._check_auth(request)
        except ApiError as error:
            return _error_response(error)
        answer = self.billing.subscription_answer() if what == "subscription" else self.billing.usage_answer()
        return JSONResponse(answer)
