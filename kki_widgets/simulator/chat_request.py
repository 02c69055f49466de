"""Validation of a ``POST /v1/chat/completions`` body into a :class:`ChatRequest`.

Every rejection is an :class:`ApiError` carrying the HTTP status and an OpenAI-shaped error
body (``{"error": {"message", "type", "param", "code"}}``) whose message says how to fix it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib

from ..protocol.profiles import KNOWN_MODELS
from . import catalog, script

# The same list the client offers: the simulator accepts what real relays are known to serve.
DEFAULT_MODELS = KNOWN_MODELS
ROLES = ("system", "user", "assistant")
MAX_DURATION = 60


class ApiError(Exception):
    """An HTTP error answer in the OpenAI shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    model: str
    prompt: str  # text of the last user message
    stream: bool
    orientation: str
    duration: int
    parent_sid: str | None  # sid found in the latest assistant message of the history
    chain: tuple[str, ...]  # earlier user prompts of the conversation, oldest first
    images: tuple[str, ...]  # one short description per image part of the last message


def default_duration(model: str) -> int:
    if model.endswith("-15s") or model.startswith("sora-2-pro"):
        return 15
    if model.startswith("veo3"):
        return 8
    return 10


def _json_options(body: dict) -> tuple[str | None, int | None]:
    """The top-level ``orientation``/``duration`` fields, validated (opt-in only)."""
    orientation = body.get("orientation")
    if orientation is not None and orientation not in catalog.ORIENTATIONS:
        raise _invalid(f"'orientation' must be 'portrait' or 'landscape', got {orientation!r}", "orientation")
    duration = body.get("duration")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_DURATION
    ):
        raise _invalid(f"'duration' must be a whole number of seconds from 1 to {MAX_DURATION}, got {duration!r}", "duration")
    return orientation, duration


def _options(body: dict, model: str, prompt: str, honour_json_options: bool) -> tuple[str, int]:
    """What a relay would make: JSON fields (if honoured), else the name, else the words."""
    fields = _json_options(body) if honour_json_options else (None, None)
    orientation = (
        fields[0]
        or catalog.orientation_from_name(model)
        or catalog.orientation_from_words(prompt)
        or "portrait"
    )
    duration = (
        fields[1]
        or catalog.duration_from_name(model)
        or catalog.duration_from_words(prompt)
        or default_duration(model)
    )
    return orientation, duration


def _invalid(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def _describe_image(url: object, where: str) -> str:
    if not isinstance(url, str) or not url:
        raise _invalid(f"{where}.image_url.url must be a non-empty string (https://… or data:…)", where)
    if url.startswith("data:"):
        header, comma, payload = url.partition(",")
        if not comma or ";base64" not in header or not header[5:].startswith("image/"):
            raise _invalid(f"{where}: a data URL must look like data:image/png;base64,<base64>", where)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"{where}: the data URL does not hold valid base64", where) from None
        if not data:
            raise _invalid(f"{where}: the data URL holds an empty image", where)
        mime = header[5:].split(";")[0]
        return f"{mime} {len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()[:12]}"
    if url.startswith(("http://", "https://")):
        return url  # noted, never fetched: the simulator makes no network calls
    raise _invalid(f"{where}.image_url.url must start with https://, http:// or data:image/", where)


def _message_parts(message: object, index: int) -> tuple[str, list[str]]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _invalid(f"{where} must be an object with 'role' and 'content'", where)
    role = message.get("role")
    if role not in ROLES:
        raise _invalid(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _invalid(f"{where}.content must be a string or a list of content parts", f"{where}.content")
    texts: list[str] = []
    images: list[str] = []
    for part_index, part in enumerate(content):
        part_where = f"{where}.content[{part_index}]"
        if not isinstance(part, dict):
            raise _invalid(f"{part_where} must be an object with a 'type'", part_where)
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _invalid(f"{part_where}.text must be a string", part_where)
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            images.append(_describe_image(url, part_where))
        else:
            raise _invalid(f"{part_where}.type must be 'text' or 'image_url', got {kind!r}", part_where)
    return "\n".join(texts), images


def parse_chat_request(
    body: object, models: tuple[str, ...], *, families: bool = True, honour_json_options: bool = False
) -> ChatRequest:
    """Validate a chat body. Like a real chat relay, extra top-level fields (``orientation``,
    ``duration``) are ignored unless `honour_json_options`; orientation and length come from the
    model's name, then the prompt's words, then the model's defaults. `families`: also serve the
    model-name families of :mod:`.catalog` besides `models`."""
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid(f"'model' is required; available models: {', '.join(models)}", "model", "missing_model")
    if not catalog.serves(model, models, families):
        raise ApiError(
            404,
            f"The model {model!r} does not exist; available models: {', '.join(models)}",
            code="model_not_found",
            param="model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty list of {role, content} objects", "messages")
    parsed = [_message_parts(message, index) for index, message in enumerate(messages)]
    last = messages[-1]
    prompt, images = parsed[-1]
    if last["role"] != "user":
        raise _invalid("the last message must be the user's prompt (role 'user')", f"messages[{len(messages) - 1}]")
    if not prompt.strip():
        raise _invalid("the last user message needs non-empty text (the prompt)", f"messages[{len(messages) - 1}]")

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid(f"'stream' must be true or false, got {stream!r}", "stream")
    orientation, duration = _options(body, model, prompt, honour_json_options)

    if model in catalog.SORA2API_MODELS:
        return _last_message_only(model, prompt, stream, orientation, duration, images)
    parent_sid = None
    chain: list[str] = []
    for message, (text, _images) in zip(messages[:-1], parsed[:-1], strict=True):
        if message["role"] == "user" and text.strip():
            chain.append(text.strip())
        elif message["role"] == "assistant":
            sids = script.SID_PATTERN.findall(text)
            if sids:
                # The spec echoes the parent's sid too; the one after "Generation Complete" is last.
                parent_sid = sids[-1]
    return ChatRequest(
        model=model,
        prompt=prompt.strip(),
        stream=stream,
        orientation=orientation,
        duration=duration,
        parent_sid=parent_sid,
        chain=tuple(chain) if parent_sid else (),
        images=tuple(images),
    )


def _last_message_only(model, prompt: str, stream: bool, orientation, duration, images) -> ChatRequest:
    """sora2api's reading: only the last message counts (`request.messages[-1]`); a share ID in
    its text names the video to remix and is taken out of the prompt; the history is ignored."""
    share = script.SID_PATTERN.search(prompt)
    return ChatRequest(
        model=model,
        prompt=" ".join(script.SID_PATTERN.sub(" ", prompt).split()),
        stream=stream,
        orientation=orientation,
        duration=duration,
        parent_sid=share.group(0) if share else None,
        chain=(),
        images=tuple(images),
    )
