"""Relay profiles: how `orientation` and `duration` travel to the relay that is used.

Chat-format relays (``POST /v1/chat/completions``) document no top-level JSON fields for a video's
orientation or length. They read them from one of two places, and a `RelayProfile` says which:

- ``words`` (the default): a short suffix on the last user message, e.g.
  ``"a fox (landscape 16:9, horizontal, duration: 15 seconds)"``. The words are part of what is
  sent, so they are shown, stored with the turn and sent back verbatim on remixes, and they are
  part of the request-cache key. Wordings relays document: "horizontal"/"vertical" in the prompt
  (https://wisdom-gate.juheapi.com/models/sora-2), "duration: 5 seconds" in the prompt
  (https://docs.gptproto.com/docs/allapi/OpenAI/sora-2/openai-format/image-to-video), "16:9"/"9:16".
- ``model``: the model's name carries them, in families each relay sells (see `BUILTIN`); the
  combinations a family does not sell are refused here, before anything is paid for.
- ``fields``: extra top-level JSON fields ``orientation``/``duration`` (the package's old
  behaviour), for relays that document them.

Pure: no I/O. `config` picks the profile from ``KKI_RELAY_PROFILE``; `relay` and `session` call
`RelayProfile.prepare`. `spec_warnings` compares what was asked with the spec a relay echoes.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from .errors import ConfigurationError

# Models seen on relays; a default for pickers and validation hints, never an enum: relays add
# models faster than we release, so any non-empty name is sent as given.
KNOWN_MODELS = (
    "sora-2",
    "sora-2-pro",
    "veo3",
    "veo3-fast",
    "veo3-pro",
    "sora_video2",
    "sora_video2-landscape",
    "sora_video2-pro",
    "sora_video2-hd",
    "sora_video2-15s",
)


ORIENTATIONS = ("portrait", "landscape")
# A Sora share ID (sora.chatgpt.com/p/s_…), the handle sora2api remixes by.
SHARE_ID = re.compile(r"s_[0-9a-f]{32}")
MAX_DURATION = 60
CARRIERS = ("words", "model", "fields")

# Default words. Each piece is a wording a relay documents (see the module docstring).
ORIENTATION_WORDS = {"landscape": "landscape 16:9, horizontal", "portrait": "portrait 9:16, vertical"}
DURATION_WORDS = "duration: {seconds} seconds"


@dataclass(frozen=True)
class WireRequest:
    """What one request sends: the model name, the messages and any extra JSON fields."""

    model: str
    messages: list
    fields: dict = field(default_factory=dict)

    def body(self) -> dict:
        return {"model": self.model, "messages": self.messages, "stream": True, **self.fields}


@dataclass(frozen=True)
class ModelFamily:
    """A family of model names that spell orientation and length, e.g. ``sora2-landscape-15s``.

    `variants` maps each model the user may pick (a "stem", e.g. ``sora2pro-hd``) to the lengths
    the family sells for it. The wire name is `template` filled with ``{stem}``, ``{base}`` (the
    family's `base`), ``{rest}`` (the stem after the base), ``{orientation}`` and ``{duration}``
    (the tokens of `orientation_tokens` / `duration_tokens`, separators included).
    """

    variants: dict
    template: str = "{stem}{orientation}{duration}"
    base: str = ""
    orientation_tokens: dict = field(
        default_factory=lambda: {"portrait": "-portrait", "landscape": "-landscape"}
    )
    duration_tokens: dict = field(default_factory=dict)  # seconds -> token; missing: "-{n}s"
    default_orientation: str = "portrait"
    default_duration: int = 10
    aliases: dict = field(default_factory=dict)  # common names (sora-2) -> a stem of this family
    # Whether a video continues by remix. Veo relays have no remix: they continue from a frame
    # (image-to-video), which `session` then does itself.
    remix: bool = True
    # How a remix names its parent: "history" (the earlier turns sent back, the seed's relays) or
    # "share_id" (the parent's Sora share ID s_<32 hex> inside the prompt; the relay reads only the
    # last message, so history would be ignored and an unrelated video billed).
    remix_by: str = "history"
    # Stems that read no image -> their image-to-video twin. A request that carries an image is
    # sent under the twin's name: the text-only model would drop the image and still charge.
    # A family with twins refuses an image for a stem that has none (nothing reads it).
    frame_stems: dict = field(default_factory=dict)
    # Wire names that break the template, (stem, orientation) -> name, as the relay spells them.
    wire_overrides: dict = field(default_factory=dict)

    def duration_token(self, seconds: int) -> str:
        return self.duration_tokens.get(seconds, f"-{seconds}s")

    def wire_name(self, stem: str, orientation: str, seconds: int) -> str:
        if (stem, orientation) in self.wire_overrides:
            return self.wire_overrides[stem, orientation]
        # A stem the family does not list gets the plain "{stem}{orientation}{duration}" form.
        known = stem in self.variants
        template = self.template if known else "{stem}{orientation}{duration}"
        base = self.base if known and self.base else stem
        return template.format(
            stem=stem,
            base=base,
            rest=stem[len(base):],
            orientation=self.orientation_tokens[orientation],
            duration=self.duration_token(seconds),
        )

    def combinations(self) -> dict:
        """Every wire name the family sells -> (stem, orientation, seconds)."""
        return {
            self.wire_name(stem, orientation, seconds): (stem, orientation, seconds)
            for stem, lengths in self.variants.items()
            for orientation in ORIENTATIONS
            for seconds in lengths
        }


@dataclass(frozen=True)
class RelayProfile:
    """How one relay reads a video's orientation and length. See the module docstring."""

    name: str
    carrier: str = "words"
    description: str = ""
    family: ModelFamily | None = None
    orientation_words: dict = field(default_factory=lambda: dict(ORIENTATION_WORDS))
    duration_words: str = DURATION_WORDS

    def __post_init__(self):
        if self.carrier not in CARRIERS:
            raise ConfigurationError(
                f"profile {self.name!r}: carrier must be one of {', '.join(CARRIERS)}, got {self.carrier!r}"
            )
        if self.carrier == "model" and self.family is None:
            raise ConfigurationError(f"profile {self.name!r}: a 'model' profile needs a family=ModelFamily(...)")

    # -- what a UI may offer ----------------------------------------------------------------

    def durations(self, model: str) -> tuple[int, ...] | None:
        """The lengths this profile can ask for with `model` (None: any, the relay decides)."""
        if self.family is None:
            return None
        stem = self.family.aliases.get(model, model)
        lengths = self.family.variants.get(stem)
        return tuple(lengths) if lengths else None

    def can_remix(self, model: str) -> bool:
        """Whether `model` continues a video by remix here (else: from the last frame)."""
        return self.family.remix if self.family is not None else True

    def can_remix_parent(self, model: str, parent_sid: str | None) -> bool:
        """Whether a parent whose answer showed `parent_sid` can be remixed: a relay that remixes
        by share ID only continues a parent with one."""
        if not self.can_remix(model):
            return False
        if self.family is not None and self.family.remix_by == "share_id":
            return is_share_id(parent_sid)
        return True

    def remix_messages(self, history: list, prompt: str, parent_sid: str | None) -> list:
        """The messages of a remix of the turn whose conversation is `history`."""
        if self.family is not None and self.family.remix_by == "share_id":
            if not is_share_id(parent_sid):
                raise ConfigurationError(
                    f"relay profile {self.name!r} remixes by the parent's share ID (s_ and 32 hex "
                    "digits), and the parent's answer showed none: continue from its last frame "
                    "(--from-frame, continue_from='last_frame')"
                )
            # sora2api: "提示词内包含remix分享链接或id即可"; it strips the ID from the prompt.
            return [{"role": "user", "content": f"{parent_sid} {prompt}"}]
        return [*history, {"role": "user", "content": prompt}]

    def models(self) -> list[str]:
        """The model names to offer in pickers (a family's stems, else nothing special).

        Image-to-video twins are not offered: they are picked for the user when a frame is sent.
        """
        if self.family is None:
            return []
        twins = set(self.family.frame_stems.values())
        return [stem for stem in self.family.variants if stem not in twins]

    # -- building a request -----------------------------------------------------------------

    def prepare(self, messages: list, model: str, orientation=None, duration=None) -> WireRequest:
        """The request that says `orientation`/`duration` the way this relay reads them.

        Raises `ConfigurationError` (nothing is sent) for a value this profile cannot express.
        `messages` is not modified; the returned one carries the words when the profile uses words.
        """
        orientation = check_orientation(orientation)
        seconds = check_duration(duration)
        if self.carrier == "fields":
            extra = {"orientation": orientation, "duration": seconds}
            return WireRequest(model, messages, {k: v for k, v in extra.items() if v is not None})
        if self.carrier == "words":
            return WireRequest(model, self._with_words(messages, orientation, seconds))
        name = self._model_name(model, orientation, seconds, carries_image(messages))
        return WireRequest(name, messages)

    def words(self, orientation: str | None, seconds: int | None) -> str:
        """The suffix for these options, e.g. ``"(landscape 16:9, horizontal, duration: 15 seconds)"``."""
        pieces = []
        if orientation is not None:
            pieces.append(self.orientation_words[orientation])
        if seconds is not None:
            pieces.append(self.duration_words.format(seconds=seconds))
        return f"({', '.join(pieces)})" if pieces else ""

    def _with_words(self, messages: list, orientation, seconds) -> list:
        suffix = self.words(orientation, seconds)
        if not suffix:
            return messages
        last = copy.deepcopy(messages[-1])
        content = last["content"]
        if isinstance(content, str):
            last["content"] = f"{content.rstrip()} {suffix}"
        else:  # content parts: the words go at the end of the last text part
            texts = [part for part in content if isinstance(part, dict) and part.get("type") == "text"]
            if texts:
                texts[-1]["text"] = f"{texts[-1]['text'].rstrip()} {suffix}"
            else:
                content.insert(0, {"type": "text", "text": suffix})
        return [*messages[:-1], last]

    def _model_name(self, model: str, orientation, seconds, image: bool) -> str:
        family = self.family
        sold = family.combinations()
        if model in sold:
            # Already a full name (sora2-landscape-15s): options may only repeat what it says.
            stem, named_orientation, named_seconds = sold[model]
            self._check_image(stem, model, image)
            for asked, named, what in ((orientation, named_orientation, "orientation"),
                                       (seconds, named_seconds, "duration")):  # fmt: skip
                if asked is not None and asked != named:
                    raise ConfigurationError(
                        f"model {model!r} already names its {what} ({named}); drop the {what} "
                        f"option or pick a base model such as {next(iter(family.variants))!r}"
                    )
            return model
        stem = family.aliases.get(model, model)
        lengths = family.variants.get(stem)
        if lengths is None:
            # Unknown to us: the relay decides. Spell the options the family's way if any.
            if orientation is None and seconds is None:
                return model
            return family.wire_name(
                stem, orientation or family.default_orientation, seconds or family.default_duration
            )
        seconds = family.default_duration if seconds is None else seconds
        if seconds not in lengths:
            allowed = ", ".join(f"{n}" for n in lengths)
            raise ConfigurationError(
                f"relay profile {self.name!r} sells {stem!r} in {allowed} seconds, not {seconds}: "
                f"pick duration={lengths[0]} (allowed: {allowed}) or another profile/model"
            )
        if image and stem in family.frame_stems:
            stem = family.frame_stems[stem]
        self._check_image(stem, model, image)
        return family.wire_name(stem, orientation or family.default_orientation, seconds)

    def _check_image(self, stem: str, model: str, image: bool) -> None:
        """Refuse, before paying, a request whose image the named model would not read (or an
        image-to-video model without an image, which the relay fails)."""
        family = self.family
        if not family.frame_stems:
            return  # the family does not tell text-only models apart: the relay decides
        twins = family.frame_stems
        if image and stem in twins:
            raise ConfigurationError(
                f"model {model!r} is text-to-video on {self.name!r}: the relay would drop the image "
                f"and still charge. Use the base name {stem!r}, which sends images to "
                f"{twins[stem]!r}, or name the image-to-video model yourself"
            )
        if image and stem not in twins.values():
            readers = ", ".join(repr(s) for s in twins)
            raise ConfigurationError(
                f"model {model!r} reads no image on {self.name!r}: pick one of {readers} "
                "(sent as their image-to-video twins) or send the prompt without an image"
            )
        if not image and stem in twins.values():
            raise ConfigurationError(
                f"model {model!r} makes a video from an image, and this request has none: "
                "continue from a frame (--from-frame, continue_from='last_frame') or pick "
                f"a text-to-video model such as {next(iter(twins))!r}"
            )


def is_share_id(sid: str | None) -> bool:
    return bool(sid) and SHARE_ID.fullmatch(sid) is not None


def carries_image(messages: list) -> bool:
    """Whether the last message (the one being sent) has an image part."""
    if not messages or not isinstance(messages[-1], dict):
        return False
    content = messages[-1].get("content")
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "image_url" for part in content
    )


def check_orientation(value) -> str | None:
    if value is None:
        return None
    if value not in ORIENTATIONS:
        raise ConfigurationError(f"orientation must be 'portrait' or 'landscape', got {value!r}")
    return value


def check_duration(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError("duration must be a whole number of seconds")
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError("duration must be a whole number of seconds") from None
    if seconds != value and not isinstance(value, str):
        raise ConfigurationError(f"duration must be a whole number of seconds, got {value!r}")
    if not 1 <= seconds <= MAX_DURATION:
        raise ConfigurationError(f"duration must be between 1 and {MAX_DURATION} seconds")
    return seconds


# -- built-in profiles -------------------------------------------------------------------------

# sora2api (github.com/TheSmallHanCat/sora2api, README "支持的模型"): sora2-{landscape,portrait}-
# {10,15,25}s, sora2pro-… the same, sora2pro-hd-… in 10 and 15 s only. Also served through
# /v1/chat/completions (README "兼容性说明"); the go-sora2api clone lists the same names.
# It reads only the last message (routes.create_chat_completion: `request.messages[-1]`) and remixes
# when that text holds a share ID ("提示词内包含remix分享链接或id即可"); its answers show one only in
# watermark-free mode ("Post ID: s_…"), so other parents continue from their last frame.
SORA2API = ModelFamily(
    variants={"sora2": (10, 15, 25), "sora2pro": (10, 15, 25), "sora2pro-hd": (10, 15)},
    aliases={"sora-2": "sora2", "sora-2-pro": "sora2pro"},
    remix_by="share_id",
)

# sora_video2 (FakeOAI/tokens docs/llm/sora.md, "模型参数"): sora_video2 joined with any of
# portrait | landscape | hd | 15s | 25s | pro by "-", e.g. sora_video2-hd-portrait-15s; the bare
# name makes a 10 s portrait SD clip, so 10 s has no token.
SORA_VIDEO2 = ModelFamily(
    variants={
        "sora_video2": (10, 15, 25),
        "sora_video2-hd": (10, 15, 25),
        "sora_video2-pro": (10, 15, 25),
        "sora_video2-pro-hd": (10, 15, 25),
    },
    duration_tokens={10: ""},
    aliases={"sora-2": "sora_video2", "sora-2-pro": "sora_video2-pro"},
)

# flow2api (github.com/TheSmallHanCat/flow2api, README "文生视频" / "首尾帧模型" and MODEL_CONFIG
# in src/services/generation_handler.py): veo_3_1_t2v_fast_portrait, veo_3_1_t2v_fast_landscape,
# veo_3_1_t2v_{portrait,landscape}, veo_2_0_t2v_…, served on /v1/chat/completions. No length in the
# name: Veo clips on Flow are 8 s. No remix either: a clip continues through an image-to-video
# ("i2v", first/last frame) model. The t2v models "不支持上传图片": flow2api drops the image with a
# "⚠️ … 将忽略图片" line and bills a clip that does not continue, so images go to the i2v twin,
# whose Veo 3.1 fast names break the pattern (…_fast_portrait_fl / …_fast_fl for landscape).
FLOW2API = ModelFamily(
    variants={
        "veo_3_1_t2v_fast": (8,), "veo_3_1_t2v": (8,), "veo_2_1_fast_d_15_t2v": (8,), "veo_2_0_t2v": (8,),
        "veo_3_1_i2v_s_fast": (8,), "veo_3_1_i2v_s": (8,), "veo_2_1_fast_d_15_i2v": (8,), "veo_2_0_i2v": (8,),
    },
    orientation_tokens={"portrait": "_portrait", "landscape": "_landscape"},
    duration_tokens={8: ""},
    default_duration=8,
    aliases={"veo3-fast": "veo_3_1_t2v_fast", "veo3": "veo_3_1_t2v"},
    remix=False,
    frame_stems={
        "veo_3_1_t2v_fast": "veo_3_1_i2v_s_fast",
        "veo_3_1_t2v": "veo_3_1_i2v_s",
        "veo_2_1_fast_d_15_t2v": "veo_2_1_fast_d_15_i2v",
        "veo_2_0_t2v": "veo_2_0_i2v",
    },
    wire_overrides={
        ("veo_3_1_i2v_s_fast", "portrait"): "veo_3_1_i2v_s_fast_portrait_fl",
        ("veo_3_1_i2v_s_fast", "landscape"): "veo_3_1_i2v_s_fast_fl",
    },
)

# veo_3_1 (FakeOAI/tokens docs/llm/flow.md, "模型参数"): veo_3_1 joined with portrait | landscape |
# fast | fl by "-", e.g. veo_3_1-landscape-fast (the order a gateway's model list uses: the
# orientation right after veo_3_1). Default portrait, 8 s. No remix: "fl" is its frame-to-video mode.
VEO_3_1 = ModelFamily(
    variants={"veo_3_1": (8,), "veo_3_1-fast": (8,), "veo_3_1-fl": (8,), "veo_3_1-fast-fl": (8,)},
    template="{base}{orientation}{rest}{duration}",
    base="veo_3_1",
    duration_tokens={8: ""},
    default_duration=8,
    aliases={"veo3-fast": "veo_3_1-fast", "veo3": "veo_3_1"},
    remix=False,
    frame_stems={"veo_3_1": "veo_3_1-fl", "veo_3_1-fast": "veo_3_1-fast-fl"},  # frames go to "fl"
)

BUILTIN: dict[str, RelayProfile] = {
    profile.name: profile
    for profile in (
        RelayProfile("words", "words", "orientation and length as words after the prompt (chat relays)"),
        RelayProfile("fields", "fields", "top-level JSON fields orientation/duration (relays that document them)"),
        RelayProfile("sora2api", "model", "model names like sora2-landscape-15s, sora2pro-hd-portrait-10s", SORA2API),
        RelayProfile("sora_video2", "model", "model names like sora_video2-hd-portrait-15s", SORA_VIDEO2),
        RelayProfile("flow2api", "model", "model names like veo_3_1_t2v_fast_landscape (8 s)", FLOW2API),
        RelayProfile("veo_3_1", "model", "model names like veo_3_1-landscape-fast (8 s)", VEO_3_1),
    )
}
DEFAULT_PROFILE = "words"


def get_profile(profile: RelayProfile | str | None = None) -> RelayProfile:
    """A profile by name (see `BUILTIN`) or as given; None gives the default (``words``)."""
    if profile is None:
        return BUILTIN[DEFAULT_PROFILE]
    if isinstance(profile, RelayProfile):
        return profile
    if isinstance(profile, str) and profile.strip() in BUILTIN:
        return BUILTIN[profile.strip()]
    raise ConfigurationError(
        f"unknown relay profile {profile!r}: use one of {', '.join(BUILTIN)} "
        "(KKI_RELAY_PROFILE, profile=...) or pass a kki_widgets.RelayProfile"
    )


# -- did the relay make what was asked? --------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d{2,5})\s*[x×*]\s*(\d{2,5})\s*$")
_RATIO = {"16:9": "landscape", "9:16": "portrait"}
_SECONDS = re.compile(r"^\s*(\d{1,3})(?:\.0+)?\s*(?:s|sec|secs|seconds?|秒)?\s*$", re.IGNORECASE)


def echoed_orientation(spec: dict) -> str | None:
    """The orientation a relay's echoed spec states (orientation, aspect_ratio or WxH size)."""
    value = spec.get("orientation")
    if isinstance(value, str) and value.strip().lower() in ORIENTATIONS:
        return value.strip().lower()
    for key in ("aspect_ratio", "ratio"):
        ratio = spec.get(key)
        if isinstance(ratio, str) and ratio.strip() in _RATIO:
            return _RATIO[ratio.strip()]
    for key in ("size", "resolution"):
        size = spec.get(key)
        match = _SIZE.match(size) if isinstance(size, str) else None
        if match and match.group(1) != match.group(2):
            return "landscape" if int(match.group(1)) > int(match.group(2)) else "portrait"
    return None


def echoed_duration(spec: dict) -> int | None:
    """The length in seconds a relay's echoed spec states (duration, seconds, n_seconds)."""
    for key in ("duration", "seconds", "n_seconds"):
        value = spec.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and 0 < value < 10_000:
            return round(value)
        match = _SECONDS.match(value) if isinstance(value, str) else None
        if match:
            return int(match.group(1))
    return None


def turn_warnings(asked: dict, spec: dict | None, notices=()) -> list[str]:
    """What a turn shows as warnings: the spec's contradictions and the relay's own warnings."""
    return spec_warnings(asked, spec) + [f"the relay warned: {notice}" for notice in notices]


def spec_warnings(asked: dict, spec: dict | None) -> list[str]:
    """Mismatches between the asked options and the spec a relay echoed, as sentences."""
    if not isinstance(spec, dict) or not spec:
        return []
    warnings = []
    orientation = asked.get("orientation")
    made = echoed_orientation(spec)
    if orientation and made and made != orientation:
        warnings.append(f"asked for {orientation}; the relay's spec says {made}")
    seconds = asked.get("duration")
    made_seconds = echoed_duration(spec)
    if seconds and made_seconds and int(seconds) != made_seconds:
        warnings.append(f"asked for {int(seconds)} seconds; the relay's spec says {made_seconds} seconds")
    return warnings
