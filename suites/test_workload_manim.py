"""The canonical Manim scene (Text, MathTex, shapes, animations) rendered at the tier's quality.

The video must have the stream the quality names and every frame the scene's run times imply;
its pictures must not be blank or frozen, and its last frame must match the reference made by
`make references`.
"""
import ast
from fractions import Fraction

import numpy as np
import pytest

from rendergate.checks.media import (
    decode_video,
    judge_video,
    load_reference,
    require_moving,
    require_not_blank,
    require_seams,
    require_video,
)
from rendergate.checks.timing import Speedup
from rendergate.checks.workloads import MANIM_QUALITIES, manim_reference, render_manim, render_manim_parts_parallel
from rendergate.core.assets import WORKLOADS
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean, table
from rendergate.plugin import requires

_QUALITY = lambda v: isinstance(v, str) and v in MANIM_QUALITIES  # noqa: E731
MANIM_SCENE = declare(
    "workloads.manim_scene", table({"smoke": _QUALITY, "full": _QUALITY}),
    f'a table naming the quality of both tiers, e.g. {{ smoke = "480p15", full = "1080p60" }} '
    f"(qualities: {', '.join(MANIM_QUALITIES)})",
    "the canonical Manim scene renders at the tier's quality: every frame, not blank, its last as the reference",
    example='{ smoke = "480p15", full = "1080p60" }')
MANIM_PARTS = declare(
    "workloads.manim_parts", boolean, "true: the scene also rendered as parts by parallel jobs and concatenated",
    "the scene rendered as parts by parallel jobs, concatenated seamlessly, and faster than one job",
    needs=("workloads.manim_scene",), thresholds={"manim_parts_speedup": 0.8}, example="true")
pytestmark = requires(MANIM_SCENE)

# Same image, same scene, same encoder: the last frame is all but identical to the reference.
# Room is left for x264's and FreeType's small differences across CPUs: mean abs diff of 1.5 of
# 255 is far below what a missing glyph or a wrong formula gives (over 5).
REFERENCE_TOLERANCE = 1.5


def scene_constant(name: str):
    """A constant of fixtures/workloads/manim_scene.py, read without importing Manim here."""
    tree = ast.parse((WORKLOADS / "manim_scene.py").read_text())
    return next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == name)


def expected_frames(fps: int, animations: int | None = None) -> int:
    """Frames of the first `animations` (default: all), as Manim samples each one:
    numpy.arange(0, run_time, 1/fps)."""
    return sum(len(np.arange(0, t, 1 / fps)) for t in scene_constant("RUN_TIMES")[:animations])


def test_manim_scene_renders(target, requirement, run_config, artifacts, compare, figures):
    """The canonical Manim scene at the tier's quality, its video judged frame by frame."""
    quality = requirement[run_config.tier]
    _, width, height, fps = MANIM_QUALITIES[quality]
    video = render_manim(target, quality, f"{target.workdir}/manim-media")
    frames = expected_frames(fps)
    # The scene starts on an empty (black) frame; from a quarter in, something must show.
    data = target.fetch(video)
    judged = decode_video(data, video, keep=[frames // 4, frames // 2, frames - 1])
    figures(f"manim-{quality}.mp4", judged.info.as_dict())
    artifacts(f"manim-{quality}.mp4", data)
    require_video(judged.info, video, "h264", width, height, Fraction(fps), frames)
    sampled = judged.frames
    for index, picture in sampled.items():
        require_not_blank(picture, f"frame {index} of the Manim video")
    require_moving(sampled, "the Manim video")

    compare(f"manim-{quality}-last-frame", sampled[frames - 1], load_reference(manim_reference(quality)),
            REFERENCE_TOLERANCE, f"the last frame at {quality}")


PARTS = ["CanonicalPart1", "CanonicalPart2"]
# Both videos come out of the same pipeline: seam frames agree to within x264's noise.
SEAM_TOLERANCE = 2.0


@requires(MANIM_PARTS)
@pytest.mark.timed
def test_manim_parts_rendered_in_parallel(target, variant, run_config, speed_gate, measure, artifacts, figures):
    """The Manim scene in two parts rendered by parallel jobs, timed against the whole scene.

    Concatenated with ffmpeg, the parts must be the scene rendered whole, frame for frame; and
    faster, by `thresholds.manim_parts_speedup`."""
    quality = variant.workloads["manim_scene"][run_config.tier]
    _, width, height, fps = MANIM_QUALITIES[quality]
    media, stitched = f"{target.workdir}/manim-parts", f"{target.workdir}/manim-parts.mp4"
    whole = {}

    def serial():
        target.check(f"rm -rf {media}/whole", "rm -rf (cleaning)")
        whole["video"] = render_manim(target, quality, f"{media}/whole")

    def parallel():
        target.check(f"rm -rf {media}/parts", "rm -rf (cleaning)")
        render_manim_parts_parallel(target, quality, f"{media}/parts", PARTS, stitched)

    base, cand = measure(serial, parallel, variant.thresholds.get("repeats", 3))

    frames = expected_frames(fps)
    seam = expected_frames(fps, animations=scene_constant("PARTS")[0])  # first frame of part 2 (0-based)
    data = target.fetch(stitched)
    artifacts("manim-parts-concatenated.mp4", data)
    concatenated = decode_video(data, stitched, keep=[seam - 1, seam])
    figures("manim-parts-concatenated.mp4", concatenated.info.as_dict())
    require_video(concatenated.info, stitched, "h264", width, height, Fraction(fps), frames)
    serial_frames = judge_video(target, whole["video"], keep=[seam - 2, seam - 1, seam, seam + 1]).frames
    require_seams(concatenated.frames, serial_frames, SEAM_TOLERANCE, "the concatenated video")

    speed_gate(f"{len(PARTS)} jobs vs 1", Speedup(base, cand, variant.thresholds["manim_parts_speedup"]))
