"""The canonical Manim scene (Text, MathTex, shapes, animations) rendered at the tier's quality.

The video must have the stream the quality names and every frame the scene's run times imply;
its pictures must not be blank or frozen, and its last frame must match the reference made by
`make references`.
"""
import ast
from fractions import Fraction

import numpy as np
import pytest

from rendergate.manifest import MANIM_QUALITIES
from rendergate.media import frames_of, load_image, probe_video, require_match, require_moving, require_not_blank, require_video
from rendergate.workloads import REFERENCES, SOURCES, render_manim

pytestmark = pytest.mark.requires("workloads.manim_scene")

# Same image, same scene, same encoder: the last frame is all but identical to the reference.
# Room is left for x264's and FreeType's small differences across CPUs: mean abs diff of 1.5 of
# 255 is far below what a missing glyph or a wrong formula gives (over 5).
REFERENCE_TOLERANCE = 1.5


def expected_frames(fps: int) -> int:
    """As Manim samples each animation: numpy.arange(0, run_time, 1/fps)."""
    tree = ast.parse((SOURCES / "manim_scene.py").read_text())
    run_times = next(ast.literal_eval(n.value) for n in tree.body
                     if isinstance(n, ast.Assign) and n.targets[0].id == "RUN_TIMES")
    return sum(len(np.arange(0, t, 1 / fps)) for t in run_times)


def test_manim_scene_renders(target, requirement, run_config, artifacts):
    quality = requirement[run_config.tier]
    _, width, height, fps = MANIM_QUALITIES[quality]
    video = render_manim(target, quality, f"{target.workdir}/manim-media")
    frames = expected_frames(fps)
    require_video(probe_video(target, video), video, "h264", width, height, Fraction(fps), frames)

    # The scene starts on an empty (black) frame; from a quarter in, something must show.
    sampled = frames_of(target, video, [frames // 4, frames // 2, frames - 1])
    for index, picture in sampled.items():
        require_not_blank(picture, f"frame {index} of the Manim video")
    require_moving(sampled, "the Manim video")

    last = sampled[frames - 1]
    reference = REFERENCES / f"manim-{quality}-last.png"
    artifacts(f"manim-{quality}-last.png", target.fetch(f"{video}.frames/3.png"))
    require_match(last, load_image(reference.read_bytes()) if reference.is_file() else None,
                  REFERENCE_TOLERANCE, f"the last frame at {quality}")
