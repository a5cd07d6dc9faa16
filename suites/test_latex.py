"""(d) LaTeX: a MathTex renders through Manim's default template (latex + dvisvgm + standalone)."""
import pytest

from rendergate.diagnosis import Cause, CheckFailed

pytestmark = pytest.mark.requires("latex")


def test_mathtex_renders(target):
    result = target.probe("mathtex")
    if result["paths"] == 0 or result["width"] <= 0:
        raise CheckFailed(Cause.OUTPUT_INVALID,
                          f"MathTex({result['formula']!r}) produced no drawable paths: dvisvgm output was empty")
