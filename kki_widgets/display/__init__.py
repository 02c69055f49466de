"""Presentation: one renderer per kind of thing (a turn's card, the history table, a gallery,
takes side by side), as HTML and text, whether it lands in a `%%sora` card, a `Turn` repr or
the widget's static fallback. Renderers read turns by their attributes; they start nothing.

`views.turn_html(turn)` draws a turn everywhere: the `%%sora` card (`TurnCard`, `LiveCard`),
`Turn._repr_html_`, `%sora show`, `%sora history`'s thumbnails (`TurnTable`), `Conversation.batch`'s
`Gallery` with its `Counter`, and VideoChat's static twin (`chat_html`/`chat_text`, `WidgetView`).
Choices that let a saved notebook play anywhere: the poster is an `<img>` (JupyterLab resolves a
relative `src`, never `poster`); the player is `<video src=…>` (untrusted JupyterLab strips
`<source src>`); `durable_url` leaves out links to a loopback relay once a turn is over; every
text is escaped. The relay's warnings and the spec mismatches (`Turn.warnings`) are shown in a
warning band. `takes_view`: the takes of one request side by side (`TakesCard`, pick buttons,
`TakesLiveView`).

May import: `kki_widgets.protocol`, `kki_widgets.media`.
"""
