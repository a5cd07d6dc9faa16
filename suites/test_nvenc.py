"""(b) ffmpeg NVENC: each required encoder is compiled in AND really encodes on the GPU.

Listing proves nothing about the GPU: Debian's ffmpeg lists h264_nvenc on machines with no
NVIDIA driver at all. Only a real encode, checked with ffprobe, does.
"""
import json

import pytest

from rendergate.diagnosis import Cause, CheckFailed, encoder_not_compiled
from rendergate.parsers import parse_ffmpeg_encoders

pytestmark = pytest.mark.requires("nvenc")

FRAMES = 30


def test_encoder_listed(target, requirement):
    encoders = parse_ffmpeg_encoders(target.check("ffmpeg -hide_banner -encoders", "ffmpeg -encoders").stdout)
    if requirement not in encoders:
        raise CheckFailed.of(encoder_not_compiled(requirement))


@pytest.mark.needs_gpu
def test_encoder_encodes(target, requirement):
    out = f"{target.workdir}/nvenc-{requirement}.mp4"
    target.check(f"mkdir -p {target.workdir} && rm -f {out} && ffmpeg -hide_banner -nostdin -y "
                 f"-f lavfi -i testsrc2=size=1280x720:rate=30 -frames:v {FRAMES} -c:v {requirement} {out}",
                 f"ffmpeg -c:v {requirement}")
    probe = json.loads(target.check(
        f"ffprobe -v error -count_frames -select_streams v:0 -show_entries "
        f"stream=codec_name,width,height,nb_read_frames -of json {out}", "ffprobe").stdout)
    streams = probe.get("streams") or [{}]
    stream = streams[0]
    expected_codec = requirement.split("_")[0]
    if stream.get("codec_name") != expected_codec or int(stream.get("nb_read_frames", 0)) != FRAMES:
        raise CheckFailed(Cause.OUTPUT_INVALID,
                          f"{requirement} wrote an invalid file: {stream.get('codec_name')} with "
                          f"{stream.get('nb_read_frames', 0)} decodable frames, expected {expected_codec} with {FRAMES}")
