"""(c) ManimPango: built against Pango, importable, and able to lay out a Manim Text."""

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean
from rendergate.plugin import requires

MANIMPANGO = declare("manimpango", boolean, "true or false", "ManimPango is built and renders text")
pytestmark = requires(MANIMPANGO)


def test_manimpango_renders_text(target):
    result = target.probe("manim_text")
    if not result["pango"]:
        raise CheckFailed(Cause.SYSTEM_LIBRARY_MISSING, "ManimPango reports no Pango version")
    # One outline per visible character: fewer means Pango fell back to missing glyphs or drew nothing.
    if result["glyphs"] != result["expected_glyphs"] or result["width"] <= 0:
        raise CheckFailed(Cause.OUTPUT_INVALID,
                          f"Text({result['sample']!r}) came out with {result['glyphs']} glyph outlines, "
                          f"width {result['width']:.2f}; expected {result['expected_glyphs']} (are fonts installed?)")
