"""The notebook front ends: the `VideoChat` widget (with `js/`), the `%%sora` / `%sora` magics and
their film commands. They hold no protocol knowledge: they call a `Conversation` and render
turns through `kki_widgets.display`.

May import: every layer.
"""
