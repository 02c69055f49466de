"""What the simulator serves, and what a real chat relay reads from a request's model and words.

Real chat relays ignore unknown top-level JSON fields: they take a video's orientation and
length from the model's name (families such as ``sora2-landscape-15s`` or
``sora_video2-hd-portrait-15s``) or from the prompt's words ("16:9", "横屏", "duration: 5
seconds", "15秒"). This module reads them the same way. The family lists are written out here
from the relays' own pages, independently of the client's `kki_widgets.protocol.profiles`, so a wrong
client template meets a ``model_not_found`` here as it would at the relay.
"""

from __future__ import annotations

import re

ORIENTATIONS = ("portrait", "landscape")

# sora2api README "支持的模型" (github.com/TheSmallHanCat/sora2api): exact names only.
SORA2API_MODELS = frozenset(
    f"{stem}-{orientation}-{seconds}s"
    for stem, lengths in (("sora2", (10, 15, 25)), ("sora2pro", (10, 15, 25)), ("sora2pro-hd", (10, 15)))
    for orientation in ORIENTATIONS
    for seconds in lengths
)
# flow2api (github.com/TheSmallHanCat/flow2api, README "文生视频" / "首尾帧模型", MODEL_CONFIG in
# src/services/generation_handler.py): exact names, 8 s clips. Text-to-video names read no image
# (the relay drops it with IMAGE_DROPPED and bills the clip); image-to-video ("首尾帧") names need
# one or two (first/last frame). Two landscape i2v names carry no orientation word.
FLOW2API_TEXT_MODELS = {
    f"{stem}_{orientation}": orientation
    for stem in ("veo_3_1_t2v_fast", "veo_3_1_t2v", "veo_2_1_fast_d_15_t2v", "veo_2_0_t2v")
    for orientation in ORIENTATIONS
}
FLOW2API_FRAME_MODELS = {
    "veo_3_1_i2v_s_fast_portrait_fl": "portrait",
    "veo_3_1_i2v_s_fast_fl": "landscape",
    **{
        f"{stem}_{orientation}": orientation
        for stem in ("veo_3_1_i2v_s", "veo_2_1_fast_d_15_i2v", "veo_2_0_i2v")
        for orientation in ORIENTATIONS
    },
}
FLOW2API_MODELS = frozenset(FLOW2API_TEXT_MODELS) | frozenset(FLOW2API_FRAME_MODELS)
# flow2api's own words (generation_handler._handle_video_generation), on its status channel.
IMAGE_DROPPED = "⚠️ 文生视频模型不支持上传图片,将忽略图片仅使用文本提示词生成\n"
FRAMES_NEEDED = "首尾帧模型需要 1-2 张图片,当前提供了 {count} 张"
# Relays that read "-"-joined options after a base name, in any order, each at most once
# (FakeOAI/tokens docs/llm/sora.md and docs/llm/flow.md, "模型参数").
TOKEN_FAMILIES = {
    "sora_video2": frozenset({"portrait", "landscape", "hd", "15s", "25s", "pro"}),
    "veo_3_1": frozenset({"portrait", "landscape", "fast", "fl"}),
}
EXCLUSIVE = (frozenset(ORIENTATIONS), frozenset({"15s", "25s"}))

_ORIENTATION_WORDS = re.compile(
    r"(landscape|horizontal|16\s*:\s*9|横屏|portrait|vertical|9\s*:\s*16|竖屏)", re.IGNORECASE
)
_LANDSCAPE = ("landscape", "horizontal", "16", "横屏")
_DURATION_WORDS = re.compile(r"(?<![\d.])(\d{1,2})\s*(?:seconds?\b|secs?\b|s\b|秒)", re.IGNORECASE)
_NAME_SECONDS = re.compile(r"(?:^|[-_])(\d{1,2})s(?:$|[-_])")


def family_tokens(model: str) -> frozenset[str] | None:
    """The option tokens of a token-family name (``sora_video2-hd-portrait``), or None."""
    for base, allowed in TOKEN_FAMILIES.items():
        if model == base:
            return frozenset()
        if model.startswith(base + "-"):
            tokens = model[len(base) + 1 :].split("-")
            unique = frozenset(tokens)
            if len(unique) != len(tokens) or not unique <= allowed:
                return None
            if any(len(unique & group) > 1 for group in EXCLUSIVE):
                return None
            return unique
    return None


def serves(model: str, models: tuple[str, ...], families: bool) -> bool:
    """Whether a relay with this model list (and, if `families`, the name families) takes `model`."""
    if model in models:
        return True
    if not families:
        return False
    return model in SORA2API_MODELS or model in FLOW2API_MODELS or family_tokens(model) is not None


def image_verdict(model: str, images: int) -> tuple[str | None, str | None]:
    """What a relay does with a request's images for `model`: (a notice it sends before dropping
    them, or a reason it refuses the request). Both None: it reads them as given."""
    if images and model in FLOW2API_TEXT_MODELS:
        return IMAGE_DROPPED, None
    if model in FLOW2API_FRAME_MODELS and not 1 <= images <= 2:
        return None, FRAMES_NEEDED.format(count=images)
    return None, None


def orientation_from_name(model: str) -> str | None:
    if model in FLOW2API_FRAME_MODELS:
        return FLOW2API_FRAME_MODELS[model]
    parts = set(re.split(r"[-_]", model))
    if "landscape" in parts:
        return "landscape"
    if "portrait" in parts:
        return "portrait"
    return None


def duration_from_name(model: str) -> int | None:
    match = _NAME_SECONDS.search(model)
    if match:
        return int(match.group(1))
    if model in FLOW2API_MODELS or model.startswith("veo"):
        return 8  # Veo clips are 8 s; these names carry no length
    if family_tokens(model) is not None:
        return 10  # the sora_video2 default: "默认生成 10 秒竖屏标清视频"
    return None


def orientation_from_words(prompt: str) -> str | None:
    """The last orientation the prompt states ("… 16:9", "横屏", "vertical"), if any."""
    found = _ORIENTATION_WORDS.findall(prompt)
    if not found:
        return None
    last = found[-1].lower()
    return "landscape" if last.startswith(_LANDSCAPE) else "portrait"


def duration_from_words(prompt: str) -> int | None:
    """The last length the prompt states ("15 seconds", "duration: 5 seconds", "10s", "15秒")."""
    lengths = [int(n) for n in _DURATION_WORDS.findall(prompt) if 1 <= int(n) <= 60]
    return lengths[-1] if lengths else None


# -- the model lists a relay of each family publishes (GET /v1/models) -------------------------
# `Simulator(catalog=...)` serves exactly one of these, so a client that reads the list (the
# package's discovery) meets each family's names as that relay lists them.
FLOW2API_IMAGE_MODELS = (  # flow2api README "图片生成": image models sit in the same list
    "gemini-2.5-flash-image-landscape", "gemini-2.5-flash-image-portrait",
    "imagen-4.0-generate-preview-landscape", "imagen-4.0-generate-preview-portrait",
)  # fmt: skip
SORA_VIDEO2_MODELS = tuple(
    f"sora_video2{grade}-{orientation}{length}"
    for grade in ("", "-hd", "-pro", "-pro-hd")
    for orientation in ORIENTATIONS
    for length in ("", "-15s", "-25s")
)
VEO_3_1_MODELS = tuple(
    f"veo_3_1-{orientation}{mode}" for orientation in ORIENTATIONS for mode in ("", "-fast", "-fl", "-fast-fl")
)
PLAIN_MODELS = ("sora-2", "sora-2-pro", "veo3", "veo3-fast", "gpt-4o-mini")
MODEL_LISTS = {
    "sora2api": tuple(sorted(SORA2API_MODELS)),
    "flow2api": tuple(sorted(FLOW2API_MODELS)) + FLOW2API_IMAGE_MODELS,
    "sora_video2": SORA_VIDEO2_MODELS,
    "veo_3_1": VEO_3_1_MODELS,
    "plain": PLAIN_MODELS,
}
