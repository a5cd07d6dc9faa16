"""(d) LaTeX: a MathTex renders through Manim's default template (latex + dvisvgm + standalone)."""

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean
from rendergate.plugin import requires

LATEX = declare("latex", boolean, "true or false", "LaTeX renders a Manim MathTex")
pytestmark = requires(LATEX)


def test_mathtex_renders(target):
    result = target.probe("mathtex")
    if result["paths"] == 0 or result["width"] <= 0:
        raise CheckFailed(Cause.OUTPUT_INVALID,
                          f"MathTex({result['formula']!r}) produced no drawable paths: dvisvgm output was empty")
