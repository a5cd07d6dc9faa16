"""ManimPango: its versions, and a Manim Text rendered through Pango into glyph outlines."""
import json
import os
import sys
import tempfile

os.environ.setdefault("COLUMNS", "250")  # Manim logs through rich: keep its messages on one line

import manimpango  # noqa: E402
from manim import Text, config  # noqa: E402

SAMPLE = sys.argv[1] if len(sys.argv) > 1 else "rendergate Ωμ"

config.media_dir = tempfile.mkdtemp(prefix="rendergate-manim-")
text = Text(SAMPLE)
print(json.dumps({
    "manimpango": manimpango.__version__,
    "pango": manimpango.pango_version(),
    "sample": SAMPLE,
    "glyphs": len(text.submobjects),
    "expected_glyphs": len(SAMPLE.replace(" ", "")),
    "width": float(text.width),
}))
