"""(b) ffmpeg NVENC: each required encoder is compiled in AND really encodes on the GPU.

Listing proves nothing about the GPU: Debian's ffmpeg lists h264_nvenc on machines with no
NVIDIA driver at all. Only a real encode does, its output decoded by rendergate's own decoder.
"""
from fractions import Fraction

import pytest

from rendergate.checks.media import judge_video, require_video
from rendergate.checks.workloads import encoder_codec
from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.grammars import SESSION_REFUSED, diagnose
from rendergate.core.known_causes import encoder_not_compiled
from rendergate.core.parsers import parse_ffmpeg_encoders
from rendergate.core.requirements import NVENC, declare
from rendergate.core.schema import list_of, word
from rendergate.plugin import requires

NVENC_ENCODERS = declare("nvenc", list_of(word), 'a list of ffmpeg encoder names, e.g. ["h264_nvenc"]',
                         "each ffmpeg NVENC encoder is compiled in and really encodes on the GPU",
                         capabilities={"video"}, gpu_feature=NVENC, example='["h264_nvenc"]')
pytestmark = requires(NVENC_ENCODERS)

FRAMES, WIDTH, HEIGHT, FPS = 30, 1280, 720, 30
# Sessions opened at once when the table does not know the GPU's cap: GeForce's cap and one more.
UNKNOWN_CAP_PROBE = 9
SESSION_SECONDS = 6  # each session encodes in real time this long, so that they all overlap


def test_encoder_listed(target, requirement):
    encoders = parse_ffmpeg_encoders(target.check("ffmpeg -hide_banner -encoders", "ffmpeg -encoders").stdout)
    if requirement not in encoders:
        raise CheckFailed.of(encoder_not_compiled(requirement))


@pytest.mark.needs_gpu
def test_encoder_encodes(target, requirement, figures):
    out = f"{target.workdir}/nvenc-{requirement}.mp4"
    target.check(f"mkdir -p {target.workdir} && rm -f {out} && ffmpeg -hide_banner -nostdin -y "
                 f"-f lavfi -i testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS} -frames:v {FRAMES} -c:v {requirement} {out}",
                 f"ffmpeg -c:v {requirement}")
    judged = judge_video(target, out)
    figures(f"nvenc-{requirement}.mp4", judged.info.as_dict())
    require_video(judged.info, out, encoder_codec(requirement), WIDTH, HEIGHT, Fraction(FPS), FRAMES)


@pytest.mark.needs_gpu
def test_encoder_session_cap(target, gpus, requirement, figures, not_on_this_gpu):
    """GeForce drivers cap concurrent NVENC sessions per system: open the cap the capability table
    expects and one more, all at once; the cap found must be the one expected."""
    gpu = gpus[0]
    expected = gpu.known.session_cap if gpu.known else None
    if expected == 0:
        not_on_this_gpu(f"{gpu.name} ({gpu.known.model}, {gpu.known.gpu_class}) has no NVENC session cap")
    tries = (expected or UNKNOWN_CAP_PROBE - 1) + 1
    folder = f"{target.workdir}/sessions-{requirement}"
    target.check(f"rm -rf {folder} && mkdir -p {folder} && for i in $(seq {tries}); do "
                 f"(ffmpeg -hide_banner -nostdin -re -f lavfi -i testsrc2=size=640x360:rate=30 -t {SESSION_SECONDS} "
                 f"-c:v {requirement} -f null - > {folder}/$i.log 2>&1; echo $? > {folder}/$i.rc) & done; wait",
                 f"ffmpeg: {tries} concurrent {requirement} sessions", timeout=SESSION_SECONDS * 10)
    logs = [(int(target.run(f"cat {folder}/{i}.rc").stdout.strip() or 1), target.run(f"cat {folder}/{i}.log").stdout)
            for i in range(1, tries + 1)]
    opened = sum(1 for rc, _ in logs if rc == 0)
    refused = sum(1 for rc, log in logs if rc != 0 and SESSION_REFUSED.search(log))
    figures("sessions", {"gpu": gpu.name, "expected_cap": expected, "tried": tries, "opened": opened, "refused": refused})
    other = next(((rc, log) for rc, log in logs if rc != 0 and not SESSION_REFUSED.search(log)), None)
    if other:
        raise CheckFailed.of(diagnose(other[1], other[0], f"ffmpeg: one of {tries} concurrent {requirement} sessions", target.facts()))
    if expected is not None and opened != expected:
        raise CheckFailed(Cause.SESSION_LIMIT, f"{opened} concurrent {requirement} sessions opened on {gpu.name}, "
                                               f"{refused} refused; the capability table expects a cap of {expected} "
                                               f"({gpu.known.model}, driver {gpu.driver_version}): another process holds "
                                               "sessions, or the driver's cap differs (3 before 530, 5 before 551)")
