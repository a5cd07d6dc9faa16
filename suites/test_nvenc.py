"""(b) ffmpeg NVENC: each required encoder is compiled in AND really encodes on the GPU.

Listing proves nothing about the GPU: Debian's ffmpeg lists h264_nvenc on machines with no
NVIDIA driver at all. Only a real encode, checked with ffprobe, does.
"""
from fractions import Fraction

import pytest

from rendergate.diagnosis import CheckFailed, encoder_not_compiled
from rendergate.media import probe_video, require_video
from rendergate.parsers import parse_ffmpeg_encoders
from rendergate.workloads import encoder_codec

pytestmark = pytest.mark.requires("nvenc")

FRAMES, WIDTH, HEIGHT, FPS = 30, 1280, 720, 30


def test_encoder_listed(target, requirement):
    encoders = parse_ffmpeg_encoders(target.check("ffmpeg -hide_banner -encoders", "ffmpeg -encoders").stdout)
    if requirement not in encoders:
        raise CheckFailed.of(encoder_not_compiled(requirement))


@pytest.mark.needs_gpu
def test_encoder_encodes(target, requirement):
    out = f"{target.workdir}/nvenc-{requirement}.mp4"
    target.check(f"mkdir -p {target.workdir} && rm -f {out} && ffmpeg -hide_banner -nostdin -y "
                 f"-f lavfi -i testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS} -frames:v {FRAMES} -c:v {requirement} {out}",
                 f"ffmpeg -c:v {requirement}")
    require_video(probe_video(target, out), out, encoder_codec(requirement), WIDTH, HEIGHT, Fraction(FPS), FRAMES)
