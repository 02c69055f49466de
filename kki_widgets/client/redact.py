"""Find the configured API key in untrusted text, in every form a relay can echo it.

Relays are trusted with the key (it is theirs to check) but not with what they write back: a
failure reason like `Invalid token: <key>` would otherwise travel into `turn.error`, the card HTML,
the widget state and the saved notebook, and the store would then refuse every write. So relay
text is redacted *before* it reaches a `Generation` or an error.

Recognised, also mixed within one occurrence: the key as is; each character percent-encoded
(`%6B`), JSON-escaped (`\\u006b`, `\\/`, `\\"`) or an HTML character reference (`&#107;`,
`&#x6b;`); and, as whole strings, its hex and base64 (standard and URL-safe, at each of the three
alignments it can have inside a longer base64 text). A stream can cut an occurrence anywhere, so
`StreamRedactor` holds back the shortest tail that could still become one.

Not recognised: encodings that need the whole key to undo (encryption, a different key
derivation), and fragments of the key (`sk-abc…xyz`, as relays show a key): a relay that wants to
exfiltrate a key it received can always do so; this stops echoes, not a determined adversary.
Pure: no I/O.
"""

from __future__ import annotations

import base64
import re

# Shorter keys are words: masking every occurrence of them would mangle honest text.
MIN_KEY_LENGTH = 4
# A held-back tail this long that never became the key is still most of the key: mask it.
_MASK_PARTIAL_FROM = 8
# Candidates for a cut-short occurrence are first checked on this many characters in C.
_HEAD_CHARS = 4


def _hex(value: int, width: int) -> list[str]:
    """One atom per hex digit, either case."""
    return [d + d.upper() if d.isalpha() else d for d in f"{value:0{width}x}"]


def _char_forms(char: str) -> list[list[str]]:
    """Every way one character of the key can be written: lists of atoms (allowed characters)."""
    code = ord(char)
    forms = [[char], ["%", *_hex(code, 2)], ["\\", "u", *_hex(code, 4)]]
    forms.append(["&", "#", *str(code), ";"])
    forms.append(["&", "#", "xX", *_hex(code, 2), ";"])
    if char in "\"\\/":
        forms.append(["\\", char])
    return forms


def _literal_forms(key: str) -> list[list[str]]:
    """Whole-string encodings of the key (hex; the base64 cores at each alignment) as atoms."""
    raw = key.encode("utf-8")
    literals = [raw.hex()]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        # Characters that depend only on the key's bytes: whole 3-byte groups inside it.
        first_group = 0 if shift == 0 else 4
        core = encoded[first_group : (len(raw) + shift) // 3 * 4]
        literals += [core, core.replace("+", "-").replace("/", "_")]
    forms = []
    for literal in dict.fromkeys(literals):
        if len(literal) >= 8:
            hexadecimal = literal == literals[0]
            forms.append([c + c.upper() if hexadecimal and c.isalpha() else c for c in literal])
    return forms


def _plain(text: str) -> bool:
    """No character that starts an escape: only the key as is, or a literal form, can be there."""
    return "%" not in text and "\\" not in text and "&" not in text


def _regex(atoms: list[str]) -> str:
    return "".join(re.escape(a) if len(a) == 1 else f"[{re.escape(a)}]" for a in atoms)


def _group(forms: list[list[str]]) -> str:
    return "(?:" + "|".join(_regex(form) for form in forms) + ")"


def _partials(forms: list[list[str]]) -> str | None:
    """A regex for a form of one character cut short (None when every form is one atom)."""
    cut = {_regex(form[:k]) for form in forms for k in range(1, len(form))}
    return "(?:" + "|".join(sorted(cut)) + ")" if cut else None


def _cut_short(steps: list[tuple[str, str | None]]) -> str:
    """A regex for any non-empty prefix of a few steps (each: its regex, its cut-short regex)."""
    pattern = None
    for full, partial in reversed(steps):
        options = [partial] if partial else []
        options.append(full if pattern is None else f"{full}(?:{pattern})?")
        pattern = "(?:" + "|".join(options) + ")"
    return pattern or ""


def _run(atoms: list[str], text: str, at: int) -> int:
    """How many atoms match `text` from `at` on."""
    count, limit = 0, min(len(atoms), len(text) - at)
    while count < limit and text[at + count] in atoms[count]:
        count += 1
    return count


class KeyRedactor:
    """Replaces the key, in any recognised form, by `mask`. One per configured key."""

    def __init__(self, key: str, mask: str = "****"):
        self.mask = mask
        self.active = isinstance(key, str) and len(key) >= MIN_KEY_LENGTH
        if not self.active:
            return
        self._per_char = [_char_forms(char) for char in key]
        self._literals = _literal_forms(key)
        # For the fast path: the forms that are plain strings (the hex one in lower case).
        self._key = key
        self._hex = key.encode("utf-8").hex()
        self._exact = [
            "".join(literal) for literal in self._literals if all(len(a) == 1 for a in literal)
        ]
        flexible = "".join(_group(forms) for forms in self._per_char)
        alternatives = [flexible, *(_regex(literal) for literal in self._literals)]
        self._full = re.compile("|".join(alternatives))
        # Where a partial occurrence can start: any first atom of the first character's forms,
        # and only where its first characters match too, or the text ends inside them.
        firsts = {c for form in self._per_char[0] for c in form[0]}
        firsts |= {c for literal in self._literals for c in literal[0]}
        self._starts = re.compile("[" + re.escape("".join(sorted(firsts))) + "]")
        head = self._per_char[:_HEAD_CHARS]
        heads = ["".join(_group(forms) for forms in head)]
        heads += [_regex(literal[:_HEAD_CHARS]) for literal in self._literals]
        self._head = re.compile("|".join(heads))
        # Near the end: the text must be cut inside those first characters.
        cut = [_cut_short([(_group(forms), _partials(forms)) for forms in head])]
        cut += [_cut_short([(_regex([a]), None) for a in lit[:_HEAD_CHARS]]) for lit in self._literals]
        self._head_cut = re.compile("(?:" + "|".join(cut) + r")\Z")
        # The longest text a partial occurrence can span: every character in its longest form.
        self.window = max(
            [sum(max(len(form) for form in forms) for forms in self._per_char)]
            + [len(literal) for literal in self._literals]
        )

    def __call__(self, text: str) -> str:
        """`text` with every whole occurrence replaced (for text that is complete)."""
        if not self.active or not text:
            return text
        if _plain(text) and not any(form in text for form in self._plain_forms(text)):
            return text  # fast path: str.find in C instead of a regex tried at every position
        return self._full.sub(self.mask, text)

    def _plain_forms(self, text: str):
        yield self._key
        yield from self._exact
        lowered = text.lower()
        if self._hex in lowered:
            yield text  # mixed-case hex: found; let the regex replace it

    def held_from(self, text: str) -> int:
        """Where a tail of `text` that could still grow into the key starts (len(text): none)."""
        if not self.active or not text:
            return len(text)
        end = len(text)
        window = text[max(0, end - self.window) :]
        if _plain(window):
            return self._plain_held_from(text)
        for start in self._starts.finditer(text, max(0, end - self.window)):
            at = start.start()
            if not (self._head.match(text, at) or self._head_cut.match(text, at)):
                continue
            if self._unfinished_at(text, at):
                return at
        return len(text)

    def _plain_held_from(self, text: str) -> int:
        """`held_from` for text without escapes: a tail that starts the key or a literal form."""
        end, earliest = len(text), len(text)
        for form in (self._key, *self._exact, self._hex, self._hex.upper()):
            at = text.rfind(form[0], max(0, end - len(form) + 1))
            while at >= 0:
                if at < earliest and form.startswith(text[at:]):
                    earliest = at
                at = text.rfind(form[0], max(0, end - len(form) + 1), at)
        return earliest

    def _unfinished_at(self, text: str, at: int) -> bool:
        """Whether `text[at:]` is an occurrence cut short by the end of the text."""
        end = len(text)
        for literal in self._literals:
            if _run(literal, text, at) == end - at:
                return True
        # Depth-first over the forms of each character: `\\` may be a raw backslash or the
        # first half of an escape, so a wrong first choice must not end the search.
        pending, seen = [(0, at)], set()
        while pending:
            index, position = pending.pop()
            if index == len(self._per_char):
                continue  # a whole occurrence: substituted already
            for form in self._per_char[index]:
                matched = _run(form, text, position)
                if position + matched == end:
                    return True  # ran out of text inside or right after this character
                step = (index + 1, position + matched)
                if matched == len(form) and step not in seen:
                    seen.add(step)
                    pending.append(step)
        return False

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts text that arrives in pieces (an occurrence may be cut anywhere between them).

    `add()` pieces, then `drain()` the redacted text that can no longer be part of the key;
    `flush()` at the end of the stream returns the rest.
    """

    __slots__ = ("_held", "_pieces", "_redactor")

    def __init__(self, redactor: KeyRedactor):
        self._redactor = redactor
        self._held = ""
        self._pieces: list[str] = []

    def add(self, piece: str) -> None:
        if piece:
            self._pieces.append(piece)

    def drain(self) -> str:
        if not self._pieces:
            return ""
        text = self._held + "".join(self._pieces)
        self._pieces.clear()
        if not self._redactor.active:
            self._held = ""
            return text
        text = self._redactor(text)
        cut = self._redactor.held_from(text)
        self._held = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        text = self.drain()
        held, self._held = self._held, ""
        if len(held) >= _MASK_PARTIAL_FROM:
            held = self._redactor.mask
        return text + held
