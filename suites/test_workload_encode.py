"""Encode: one lossless source clip encoded with libx264 and with each required NVENC encoder.
Every output must decode frame for frame (by rendergate's decoder, on its side); NVENC must be `thresholds.nvenc_speedup` times as fast
as libx264 (fps ratio), as a render pipeline moving its encodes to the GPU expects."""
from fractions import Fraction

import pytest

from rendergate.checks.media import judge_video, require_video
from rendergate.checks.timing import Speedup
from rendergate.checks.workloads import encode, encoder_codec, make_source
from rendergate.core.requirements import NVENC, declare
from rendergate.core.schema import SIZE, integer, size, table
from rendergate.plugin import requires

ENCODE = declare(
    "workloads.encode", table({"size": size, "frames": integer(1, 10000)}),
    f'{{ size = "1920x1080", frames = 120 }} (size {SIZE}, frames 1 to 10000)',
    "a clip encodes with libx264 and each NVENC encoder, decodes frame for frame, NVENC faster",
    gpu_feature=NVENC, thresholds={"nvenc_speedup": 2.0}, needs_with={"requirements.nvenc": "thresholds.nvenc_speedup"},
    example='{ size = "1920x1080", frames = 120 }')
pytestmark = requires(ENCODE)

SOURCE_FPS = 30


def source(target, requirement) -> str:
    path = f"{target.workdir}/encode-source.mkv"
    if "encode-source" not in target.memo:
        make_source(target, path, requirement["size"], requirement["frames"], SOURCE_FPS)
        target.memo["encode-source"] = path
    return path


def encode_and_check(target, requirement, encoder: str, figures) -> None:
    out = f"{target.workdir}/encode-{encoder}.mp4"
    encode(target, source(target, requirement), encoder, out)
    width, height = (int(n) for n in requirement["size"].split("x"))
    judged = judge_video(target, out)
    figures(f"encode-{encoder}.mp4", judged.info.as_dict())
    require_video(judged.info, out, encoder_codec(encoder), width, height, Fraction(SOURCE_FPS), requirement["frames"])


def test_libx264_encode_is_valid(target, requirement, figures):
    """The source clip encoded with libx264, decoded frame for frame."""
    encode_and_check(target, requirement, "libx264", figures)


@pytest.mark.needs_gpu
@pytest.mark.timed
def test_nvenc_speedup_over_libx264(target, variant, requirement, speed_gate, measure, figures):
    """The source clip encoded with each required NVENC encoder, timed against libx264."""
    for encoder in variant.requirements.get("nvenc", []):
        encode_and_check(target, requirement, encoder, figures)
        base, cand = measure(lambda: encode(target, source(target, requirement), "libx264", f"{target.workdir}/t.mp4"),
                             lambda: encode(target, source(target, requirement), encoder, f"{target.workdir}/t.mp4"),
                             variant.thresholds.get("repeats", 3))
        speed_gate(f"{encoder} vs libx264", Speedup(base, cand, variant.thresholds["nvenc_speedup"]))
