"""LaTeX through Manim's default template: a MathTex compiled by latex, converted by dvisvgm."""
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("COLUMNS", "250")  # Manim logs through rich: keep its messages on one line

from manim import MathTex, config  # noqa: E402

FORMULA = sys.argv[1] if len(sys.argv) > 1 else r"\int_0^1 x^2\,dx = \frac{1}{3}"

config.media_dir = tempfile.mkdtemp(prefix="rendergate-manim-")
try:
    tex = MathTex(FORMULA)
except Exception:
    # LaTeX's own account of the failure ("! LaTeX Error: File `standalone.cls' not found.")
    for log in Path(config.media_dir).rglob("*.log"):
        print("".join(line for line in log.read_text(errors="replace").splitlines(keepends=True)
                      if line.startswith("!")), file=sys.stderr)
    raise
print(json.dumps({
    "formula": FORMULA,
    "paths": len(tex.family_members_with_points()),
    "width": float(tex.width),
}))
