"""Presentation: one renderer per kind of thing (a turn's card, the history table, a gallery,
takes side by side), as HTML and text, whether it lands in a `%%sora` card, a `Turn` repr or
the widget's static fallback. Renderers read turns by their attributes; they start nothing.

May import: `kki_widgets.protocol`, `kki_widgets.media`.
"""
