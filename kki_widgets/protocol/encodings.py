"""Content encodings a relay (or a proxy in front of it) applies, undone in bounded steps.

The client asks every relay for `Accept-Encoding: identity`; a compressing proxy may answer gzip
anyway. httpx would inflate each network read whole (a 64 KB read of a stacked `gzip, gzip`
answer becomes gigabytes before any cap looks), so the client reads raw bytes and inflates them
here: every layer gives at most `STEP` bytes per call and is asked for more only when the layer
after it has used what it had, so the caps count inflated bytes before they exist and memory
stays at a few steps per layer whatever the relay sends.

gzip, x-gzip and deflate use the standard library; br needs `brotli>=1.2` (its output limit),
zstd needs `zstandard`; both are optional (`pip install kki-widgets[compression]`). An encoding
that cannot be undone here is an `EncodingError` that names it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from .errors import ProtocolError

STEP = 64 * 1024
MAX_LAYERS = 4  # more stacked encodings than any honest server applies
# zstd has no output limit per call: its input is fed in slices this small (an RLE block of a few
# bytes may stand for 128 KB of output), which bounds each step's output at a few hundred KB.
_ZSTD_SLICE = 16


class EncodingError(ProtocolError):
    """An answer whose Content-Encoding could not be undone, or that inflates past a cap."""

    hint = "A proxy in front of the relay may be compressing its answers: ask it not to, or set NO_PROXY."


class _Identity:
    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data

    def read(self) -> bytes:
        out, self._pending = self._pending[:STEP], self._pending[STEP:]
        return out


class _Zlib(_Identity):
    def __init__(self, wbits: int) -> None:
        super().__init__()
        self._wbits = wbits
        self._inflater = zlib.decompressobj(wbits)
        self._started = False
        self._head = b""  # the input before the first output: "deflate" may need a second try

    def feed(self, data: bytes) -> None:
        super().feed(data)
        if not self._started and len(self._head) < STEP:
            self._head += data

    def read(self) -> bytes:
        if not self._pending or self._inflater.eof:
            return b""
        try:
            out = self._inflater.decompress(self._pending, STEP)
        except zlib.error:
            if self._started or self._wbits != zlib.MAX_WBITS:
                raise
            # "deflate" is sent both zlib-wrapped (as the RFC says) and raw (as servers do).
            self._wbits, self._inflater = -zlib.MAX_WBITS, zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._inflater.decompress(self._head, STEP)
        self._started = self._started or bool(out)
        self._pending = self._inflater.unconsumed_tail
        return out


class _Brotli(_Identity):
    def __init__(self) -> None:
        super().__init__()
        import brotli

        self._inflater = brotli.Decompressor()

    def read(self) -> bytes:
        if self._inflater.is_finished():
            return b""
        if not self._inflater.can_accept_more_data():
            return self._inflater.process(b"", output_buffer_limit=STEP)
        if not self._pending:
            return b""
        data, self._pending = self._pending, b""
        return self._inflater.process(data, output_buffer_limit=STEP)


class _Zstd(_Identity):
    def __init__(self) -> None:
        super().__init__()
        import zstandard

        self._inflater = zstandard.ZstdDecompressor().decompressobj()

    def read(self) -> bytes:
        while self._pending:
            data, self._pending = self._pending[:_ZSTD_SLICE], self._pending[_ZSTD_SLICE:]
            out = self._inflater.decompress(data)
            if out:
                return out
        return b""


def _layer(name: str):
    if name in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16)
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if name == "identity":
        return _Identity()
    if name == "br":
        try:
            import brotli
        except ImportError:
            brotli = None
        if brotli is None or not hasattr(brotli.Decompressor(), "can_accept_more_data"):
            raise EncodingError("the answer is compressed with br (Content-Encoding: br), which needs "
                                "the brotli>=1.2 package: pip install 'brotli>=1.2'")
        return _Brotli()
    if name == "zstd":
        try:
            return _Zstd()
        except ImportError:
            raise EncodingError("the answer is compressed with zstd (Content-Encoding: zstd), which "
                                "needs the zstandard package: pip install zstandard") from None
    raise EncodingError(f"the answer uses a content encoding this client cannot undo ({name!r})")


def supported() -> list[str]:
    """The encodings this installation can undo (the Accept-Encoding it could offer)."""
    names = ["gzip", "deflate"]
    for name in ("br", "zstd"):
        try:
            _layer(name)
            names.append(name)
        except EncodingError:
            pass
    return names


class Inflater:
    """Raw bytes in, inflated pieces (each at most `STEP`) out, at most `limit` bytes in all.

    `what` names the answer in errors ("the relay's answer", "the price list")."""

    def __init__(self, header: str | None, limit: int, what: str = "the relay's answer") -> None:
        names = [part.strip().lower() for part in (header or "").split(",") if part.strip()]
        self.header = ", ".join(names)
        self.what = what
        self.limit = limit
        self.total = 0
        if len(names) > MAX_LAYERS:
            raise EncodingError(f"{what} is encoded {len(names)} times over (Content-Encoding: "
                                f"{self.header}); no honest server stacks more than {MAX_LAYERS}")
        # Content-Encoding lists them in the order applied: undo the last first.
        self._layers = [_layer(name) for name in reversed(names)] or [_Identity()]

    @property
    def encoded(self) -> bool:
        return self.header not in ("", "identity")

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """Inflated pieces of `raw` (plus what earlier reads left inside the layers)."""
        self._layers[0].feed(raw)
        while True:
            piece = self._pull(len(self._layers) - 1)
            if not piece:
                return
            self.total += len(piece)
            if self.total > self.limit:
                raise EncodingError(
                    f"{self.what} (Content-Encoding: {self.header}) inflates past "
                    f"{_size(self.limit)}; it was refused before that size was in memory"
                    if self.encoded else f"{self.what} passed {_size(self.limit)}"
                )
            yield piece

    def _pull(self, index: int) -> bytes:
        """At most STEP inflated bytes from layer `index`, fed from the layers before it."""
        layer = self._layers[index]
        while True:
            try:
                out = layer.read()
            except Exception as error:  # zlib.error, brotli.error, zstd.ZstdError
                raise EncodingError(
                    f"{self.what} could not be decoded as {self.header} (Content-Encoding: "
                    f"{self.header}): {type(error).__name__}"
                ) from None
            if out or index == 0:
                return out
            more = self._pull(index - 1)
            if not more:
                return b""
            layer.feed(more)


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
