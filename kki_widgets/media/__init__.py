"""Media: reaching, keeping and cutting the relay's videos and images.

Downloads kept next to the notebook, each hop through the address policy (`downloads`), a clip's
last frame and the film cut (`film`, ffmpeg), and the publishable HTML page (`export`).

May import: `kki_widgets.protocol`, `kki_widgets.store`, `kki_widgets.net`.
"""
