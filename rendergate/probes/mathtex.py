"""LaTeX through Manim's default template: a MathTex compiled by latex, converted by dvisvgm."""
import json
import sys
import tempfile

from manim import MathTex, config

FORMULA = sys.argv[1] if len(sys.argv) > 1 else r"\int_0^1 x^2\,dx = \frac{1}{3}"

config.media_dir = tempfile.mkdtemp(prefix="rendergate-manim-")
tex = MathTex(FORMULA)
print(json.dumps({
    "formula": FORMULA,
    "paths": len(tex.family_members_with_points()),
    "width": float(tex.width),
}))
