"""What a relay sells, read from its model list: which names are videos, which family spells them,
the profile that follows, and the choices (lengths, orientations, sizes) each video model offers.

Pure: no I/O. `discovery` fetches the list; `session`, `magics` and `widget` show what this
module concludes.

Model lists come in several shapes, all read here:

- the OpenAI list, ``{"object": "list", "data": [{"id": "sora-2", "object": "model", ...}]}``
  (``GET /v1/models``: OpenAI's API reference; sora2api, flow2api, new-api and one-api answer it);
- new-api's dashboard list, ``{"success": true, "data": {"1": ["gpt-4", ...], "2": [...]}}``
  (channel ID → names; QuantumNous/new-api-docs ``docs/api/get-available-models-list.md``,
  ``GET /api/models``) and one-api's ``{"success": true, "data": ["gpt-4", ...]}``;
- ``{"models": [...]}`` of names or of objects with ``id``/``name`` (Gemini-style gateways,
  ``"name": "models/veo-3.0-generate-001"``), and a bare JSON list.

Anything else reads as "no list". At most `MAX_MODELS` names are kept, each a short printable
token: the list is untrusted text that ends up in pickers and tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .profiles import BUILTIN, DEFAULT_PROFILE, ORIENTATIONS, RelayProfile

MAX_MODELS = 2000
_NAME = re.compile(r"^[\w.:/@+\-]{1,120}$")

NO_FAMILY = "the relay lists no model names we know; orientation and length go as words"
# Words in model names that mark a video model (lower case), from the model lists of relays and
# gateways: Sora, Veo, Kling, Hailuo/MiniMax, Wan, Seedance, Runway, Pika, Luma, Vidu, Hunyuan.
VIDEO_HINTS = (
    "sora", "veo", "video", "kling", "hailuo", "t2v", "i2v", "seedance", "runway", "gen3", "gen-3",
    "pika", "luma", "ray-2", "vidu", "hunyuan-video", "wan2", "wan-2", "pixverse", "cogvideo",
)  # fmt: skip
IMAGE_HINTS = (
    "image", "dall-e", "dalle", "flux", "midjourney", "imagen", "seedream", "stable-diffusion",
    "sdxl", "recraft", "ideogram", "kolors",
)  # fmt: skip
# Sizes a family sells as a separate stem: {profile: {base stem: {size token: stem}}}. sora2api
# sells Sora 2 Pro in HD as "sora2pro-hd-…"; sora_video2 adds an "hd" token to either base.
SIZES = {
    "sora2api": {"sora2pro": {"hd": "sora2pro-hd"}},
    "sora_video2": {"sora_video2": {"hd": "sora_video2-hd"}, "sora_video2-pro": {"hd": "sora_video2-pro-hd"}},
}
DEFAULT_SIZE = "sd"
# "1080p"/"high" are how people ask for the HD stems; the relay's own token is "hd".
SIZE_ALIASES = {"1080p": "hd", "high": "hd", "720p": "sd", "standard": "sd"}


def model_ids(data) -> list[str]:
    """The model names in a model-list answer of any of the shapes above (de-duplicated)."""
    rows = _rows(data)
    names: list[str] = []
    for row in rows[: MAX_MODELS * 2]:
        name = row if isinstance(row, str) else _row_name(row)
        if isinstance(name, str):
            name = name.removeprefix("models/").strip()
            if _NAME.match(name) and name not in names:
                names.append(name)
        if len(names) >= MAX_MODELS:
            break
    return names


def _rows(data) -> list:
    if isinstance(data, list):
        return data
    if not isinstance(data, Mapping):
        return []
    for key in ("data", "models"):
        value = data.get(key)
        if isinstance(value, list):
            return value
        if isinstance(value, Mapping):  # new-api /api/models: channel ID -> names
            return [name for names in value.values() if isinstance(names, list) for name in names]
    return []


def _row_name(row) -> str | None:
    if not isinstance(row, Mapping):
        return None
    for key in ("id", "name", "model", "model_name"):
        if isinstance(row.get(key), str):
            return row[key]
    return None


def kind_of(name: str) -> str:
    """'video', 'image' or 'chat', by the words a model's name carries."""
    lower = name.lower()
    if family_of(name) is not None or any(hint in lower for hint in VIDEO_HINTS):
        return "video"
    if any(hint in lower for hint in IMAGE_HINTS):
        return "image"
    return "chat"


def _families() -> dict[str, dict]:
    """Every built-in name family's wire names -> (stem, orientation, seconds)."""
    return {
        name: profile.family.combinations()
        for name, profile in BUILTIN.items()
        if profile.family is not None
    }


_SOLD = _families()


def family_of(name: str) -> str | None:
    """The built-in profile whose model names include `name` (None: plain or unknown)."""
    for family, sold in _SOLD.items():
        if name in sold:
            return family
    return None


@dataclass(frozen=True)
class Offer:
    """One video model as a user picks it, and what the relay sells of it."""

    name: str  # what the user picks: sora-2, veo3-fast, or the relay's own name
    family: str | None  # the profile that spells it, None: options go as words
    orientations: tuple = ()
    durations: tuple = ()  # () : any length, the relay decides
    sizes: tuple = ()  # () : one size (the relay's)
    wire_names: tuple = ()  # the relay's names behind this choice

    def to_dict(self) -> dict:
        return {
            "name": self.name, "family": self.family, "orientations": list(self.orientations),
            "durations": list(self.durations), "sizes": list(self.sizes), "wire_names": list(self.wire_names),
        }  # fmt: skip


@dataclass(frozen=True)
class Detection:
    """What a relay's model list says: the profile to use and why, and the video models on offer."""

    profile: str = DEFAULT_PROFILE
    reason: str = NO_FAMILY
    listed: bool = False  # whether the relay answered a model list at all
    video: tuple = ()
    image: tuple = ()
    chat: tuple = ()
    families: dict = field(default_factory=dict)  # profile -> how many listed names it spells
    offers: tuple = ()

    @property
    def recognised(self) -> bool:
        return bool(self.families)


def detect(names: list[str] | None) -> Detection:
    """The profile a relay with this model list needs (None: the relay published no list)."""
    if not names:
        return Detection(listed=names is not None)
    kinds: dict[str, list[str]] = {"video": [], "image": [], "chat": []}
    counts: dict[str, int] = {}
    for name in names:
        kinds[kind_of(name)].append(name)
        family = family_of(name)
        if family is not None:
            counts[family] = counts.get(family, 0) + 1
    chosen = max(counts, key=lambda name: counts[name]) if counts else DEFAULT_PROFILE
    plain = sum(1 for name in kinds["video"] if family_of(name) is None)
    if counts and counts[chosen] <= plain:
        # Mostly plain names (sora-2, veo3) with a few family spellings: such a relay reads the
        # plain names, so the words stay (a family name picked by hand is still sent as is).
        counts = {}
        chosen = DEFAULT_PROFILE
    if counts:
        sample = ", ".join(name for name in kinds["video"] if family_of(name) == chosen)
        reason = f"the relay lists {counts[chosen]} {chosen}-style model names ({_shorten(sample)})"
    else:
        reason = NO_FAMILY
    return Detection(
        profile=chosen, reason=reason, listed=True, video=tuple(kinds["video"]),
        image=tuple(kinds["image"]), chat=tuple(kinds["chat"]), families=counts,
        offers=tuple(offers_for(kinds["video"], BUILTIN[chosen] if counts else None)),
    )  # fmt: skip


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(",", 1)[0] + ", …"


def offers_for(video: list[str], profile: RelayProfile | None) -> list[Offer]:
    """The relay's video models as a user picks them: a family's stems under their common names
    (sora2-landscape-15s → sora-2), with the lengths, orientations and sizes listed for each;
    plain names as they are (any orientation, the relay decides the length)."""
    family = profile.family if profile is not None else None
    sold = family.combinations() if family is not None else {}
    twins = set(family.frame_stems.values()) if family is not None else set()
    sized = {stem: base for base, sizes in SIZES.get(getattr(profile, "name", ""), {}).items()
             for stem in sizes.values()}  # fmt: skip
    grouped: dict[str, list] = {}
    plain = []
    for name in video:
        if name not in sold:  # sent as given (another family's full name is one too)
            plain.append(Offer(name, None, ORIENTATIONS, wire_names=(name,)))
            continue
        stem, orientation, seconds = sold[name]
        if stem in twins:
            continue  # image-to-video twins are picked for the user when a frame is sent
        grouped.setdefault(sized.get(stem, stem), []).append((stem, orientation, seconds, name))
    offers = [_family_offer(profile, base, rows) for base, rows in grouped.items()]
    taken = {offer.name for offer in offers}
    return offers + [offer for offer in plain if offer.name not in taken]


def _family_offer(profile: RelayProfile, base: str, rows: list) -> Offer:
    family = profile.family
    common = {stem: alias for alias, stem in reversed(list(family.aliases.items()))}
    sizes = SIZES.get(profile.name, {}).get(base, {})
    offered_sizes = [DEFAULT_SIZE] if any(stem == base for stem, *_ in rows) else []
    offered_sizes += [size for size, stem in sizes.items() if any(row[0] == stem for row in rows)]
    return Offer(
        name=common.get(base, base),
        family=profile.name,
        orientations=tuple(o for o in ORIENTATIONS if any(row[1] == o for row in rows)),
        durations=tuple(sorted({row[2] for row in rows})),
        sizes=tuple(offered_sizes) if len(offered_sizes) > 1 else (),
        wire_names=tuple(row[3] for row in rows),
    )


def sized_model(profile: RelayProfile, model: str, size: str | None) -> str:
    """The model to send for `size` (``hd``, ``1080p``…): the family's stem that sells it.

    Raises `ConfigurationError` naming the sizes on offer when the profile's family has no such size for
    `model` (words and plain names carry no size at all)."""
    if size is None:
        return model
    token = SIZE_ALIASES.get(size.strip().lower(), size.strip().lower())
    family = profile.family
    stem = family.aliases.get(model, model) if family is not None else model
    by_base = SIZES.get(profile.name, {})
    base = next((b for b, sizes in by_base.items() if stem in sizes.values()), stem)
    sizes = by_base.get(base, {})
    if token == DEFAULT_SIZE and sizes:
        return base
    if token in sizes:
        return sizes[token]
    sellers = [f"{b} ({', '.join([DEFAULT_SIZE, *s])})" for b, s in by_base.items()]
    where = f"; sizes are sold for {', '.join(sellers)}" if sellers else ""
    allowed = ", ".join([DEFAULT_SIZE, *sizes]) if sizes else "none (the relay's one size)"
    raise ConfigurationError(
        f"--size {size}: relay profile {profile.name!r} sells {model!r} in sizes {allowed}{where}; "
        "drop --size or pick a model that sells it (%sora models lists them)"
    )
