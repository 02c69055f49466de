"""Building one request (pure, no network): the message list checked, images as content parts,
and the relay profile deciding where orientation and length go."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path

from .errors import ConfigurationError
from .profiles import get_profile
from .sniff import image_mime

MAX_IMAGE_BYTES = 20 * 1024 * 1024
ROLES = ("system", "user", "assistant")


def image_part(image) -> dict:
    """An OpenAI `image_url` content part from a URL, a path, bytes or a PIL image."""
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:image/")):
        return {"type": "image_url", "image_url": {"url": image}}
    if isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"image {str(image)!r} is neither an http(s) URL nor an existing file"
            )
        data = path.read_bytes()
        mime = mimetypes.guess_type(path.name)[0] or image_mime(data)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        mime = image_mime(data)
    elif hasattr(image, "save"):  # a PIL image, without importing PIL
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    else:
        raise ConfigurationError(
            f"cannot send {type(image).__name__} as an image: pass a path, URL, bytes or PIL image"
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise ConfigurationError(
            f"image is {len(data) // 1024 // 1024} MB; relays accept up to 20 MB: resize it first"
        )
    if not mime or not mime.startswith("image/"):
        raise ConfigurationError("the image is not a PNG, JPEG, WebP or GIF file")
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{encoded}"}}


def prompt_text(content) -> str:
    """The text of a message content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def check_prompt(prompt) -> None:
    """A prompt is text that describes a video (the one home of that check)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigurationError("the prompt is empty: describe the video you want")


def normalize_messages(messages, images=None) -> list[dict]:
    """Validate the OpenAI message list; a plain string is one user message."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ConfigurationError("messages must be a prompt string or a non-empty list of messages")
    normalized = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ConfigurationError(
                f"message {number} needs a role of {', '.join(ROLES)} and a content"
            )
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise ConfigurationError(f"message {number} content must be a string or a list of parts")
        for part in content if isinstance(content, list) else ():
            # A stored image whose file is gone (see store_frames): said only when it is sent.
            missing = (part.get("image_url") or {}).get("missing") if isinstance(part, dict) else None
            if isinstance(missing, str):
                raise ConfigurationError(missing)
        normalized.append({"role": message["role"], "content": content})
    last = normalized[-1]
    if last["role"] != "user":
        raise ConfigurationError("the last message must be the user's prompt")
    check_prompt(prompt_text(last["content"]))
    if images:
        text = prompt_text(last["content"])
        parts = [{"type": "text", "text": text}] + [image_part(image) for image in images]
        normalized[-1] = {"role": "user", "content": parts}
    return normalized


def build_body(
    messages: list[dict], model: str, orientation=None, duration=None, profile=None
) -> dict:
    """The JSON body of one request: `profile` (default: words after the prompt) decides where
    `orientation` and `duration` go, and refuses values the relay does not sell."""
    return get_profile(profile).prepare(messages, model, orientation, duration).body()
