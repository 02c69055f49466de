"""A cell's text with the user's variables filled in: `{name}`, `{obj.attr}`, `{seq[0]:fmt}`
(the `%%sora` magic and its `--storyboard` cells share it)."""

from __future__ import annotations

import string


def interpolate(text: str, namespace: dict) -> str:
    """Fill ``{name}``, ``{obj.attr}``, ``{seq[0]:fmt}`` from ``namespace``; leave the rest alone.

    Prompts often contain braces that are not variables (JSON, ``{}``), so unknown or
    unparseable fields stay exactly as written; ``{{`` and ``}}`` give literal braces.
    """
    formatter = string.Formatter()
    try:
        pieces = list(formatter.parse(text))
    except ValueError:  # a lone "}" or an unclosed "{": not a template
        return text
    out: list[str] = []
    for literal, field, spec, conversion in pieces:
        out.append(literal)
        if field is None:
            continue
        original = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not field or field[0].isdigit() or field.split(".")[0].split("[")[0] not in namespace:
            out.append(original)
            continue
        try:
            value, _ = formatter.get_field(field, (), namespace)
            value = formatter.convert_field(value, conversion) if conversion else value
            out.append(formatter.format_field(value, spec or ""))
        except Exception:  # a bad attribute/index/format spec: keep the text as written
            out.append(original)
    return "".join(out)
