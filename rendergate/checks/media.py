"""Judging rendered outputs on rendergate's side: every video a workload produces is fetched
from the target and decoded here, by rendergate's own pinned decoder (PyAV, with the FFmpeg
libraries its wheel bundles), never by the image's ffprobe or ffmpeg: an image that is being
judged cannot vouch for its own outputs. Frames are compared pixel by pixel here too. Producing
outputs (the workloads) and judging them (here) are separate pieces.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import cache

import numpy as np
from PIL import Image

from rendergate.core.diagnosis import Cause, CheckFailed

# A frame whose pixels vary less than this (standard deviation, 0-255) shows nothing.
BLANK_STD = 2.0
# Two frames whose mean absolute difference is below this (0-255) are the same picture: frozen.
SAME_FRAME_MAD = 0.5
LAST = -1  # in keep=: the video's last frame, whatever its index


@cache
def decoder() -> str:
    """Who judged an output, as the report and the verdict's figures say it. PyAV is imported
    when a video is judged, not when the suites load (every xdist worker loads them)."""
    import av
    return f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})"


@dataclass(frozen=True)
class VideoInfo:
    """What rendergate's decoder saw of a video: its stream, and how many frames decoded."""
    codec: str
    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    size_bytes: int = 0
    decoder: str = field(default_factory=decoder)
    error: str = ""  # the decoder's error where decoding stopped before the end

    def as_dict(self) -> dict:
        return {**asdict(self), "fps": str(self.fps)}


@dataclass(frozen=True)
class Decoded:
    info: VideoInfo
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # the frames asked for, by index (LAST too)


def decode_video(data: bytes, path: str, keep=()) -> Decoded:
    """Decode every frame of the video `data` (from `path`), keeping the frames at `keep` (0-based,
    LAST for the last one) as RGB arrays; a file that is no video fails as such."""
    import av
    wanted, kept, last = set(keep), {}, None
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            count, error = 0, ""
            try:
                for frame in container.decode(stream):
                    if count in wanted:
                        kept[count] = _rgb(frame)
                    last, count = frame, count + 1
            except av.error.FFmpegError as e:  # decoding stopped part-way: the frames so far count
                error = _why(e)
            duration = container.duration / av.time_base if container.duration else (
                float(stream.duration * stream.time_base) if stream.duration else 0.0)
            info = VideoInfo(codec=stream.codec_context.name, width=stream.codec_context.width,
                             height=stream.codec_context.height, fps=Fraction(stream.base_rate or stream.average_rate or 0),
                             frames=count, duration=duration, size_bytes=len(data), error=error)
    except (av.error.FFmpegError, ValueError) as e:
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{path} is not a playable video ({decoder()}): {_why(e)}") from None
    if LAST in wanted and last is not None:
        kept[LAST] = _rgb(last)
    return Decoded(info, kept)


def _why(error: Exception) -> str:
    """The decoder's own words, without its errno and file name decorations."""
    return getattr(error, "strerror", None) or str(error)


def _rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24").astype(np.float32)


def judge_video(target, path: str, keep=()) -> Decoded:
    """Fetch the video at `path` from the target and decode it here (decode_video)."""
    return decode_video(target.fetch(path), path, keep)


def encode_frames(pictures: list[bytes], fps: int, crf: int = 16) -> bytes:
    """PNG frames into one H.264 video (libx264, yuv420p), on rendergate's side: the stitching of
    a render farm whose combining happens outside the render image."""
    import av
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        first = Image.open(io.BytesIO(pictures[0]))
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = first.width, first.height, "yuv420p"
        for png in pictures:
            frame = av.VideoFrame.from_image(Image.open(io.BytesIO(png)).convert("RGB"))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def load_image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def to_png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def difference_image(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """Where two same-sized pictures differ, amplified so that small differences show."""
    return np.clip(np.abs(a - b) * gain, 0, 255)


def load_reference(path) -> np.ndarray | None:
    """A reference image, or None when it was never made (require_match then fails)."""
    return load_image(path.read_bytes()) if path.is_file() else None


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).mean())


def is_blank(image: np.ndarray) -> bool:
    return float(image.std()) < BLANK_STD


def require_not_blank(image: np.ndarray, what: str) -> None:
    if is_blank(image):
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{what} is blank: one flat colour (pixel std {image.std():.2f})")


def require_match(image: np.ndarray, reference: np.ndarray | None, tolerance: float, what: str) -> float:
    """Mean absolute difference to the reference (0-255), which must not exceed `tolerance`.
    A missing reference fails: a match that could not be checked is not a pass."""
    if reference is None:
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{what}: no reference image: make it with `make references`")
    if image.shape != reference.shape:
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{what} is {image.shape[1]}x{image.shape[0]}, "
                                                f"the reference {reference.shape[1]}x{reference.shape[0]}")
    mad = mean_abs_diff(image, reference)
    if mad > tolerance:
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{what} differs from its reference: mean abs diff {mad:.2f} > {tolerance}")
    return mad


def require_video(info: VideoInfo, path: str, codec: str, width: int, height: int, fps: Fraction, frames: int) -> None:
    """The stream is what was asked for, and every expected frame decodes (by rendergate's decoder)."""
    if info.frames < frames:
        stopped = f" ({info.decoder} stopped: {info.error})" if info.error else ""
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{path} is truncated: {info.frames} of {frames} frames decode{stopped}")
    problems = [f"{what} {got} (expected {want})" for what, got, want in (
        ("codec", info.codec, codec), ("size", f"{info.width}x{info.height}", f"{width}x{height}"),
        ("frame rate", info.fps, fps), ("frames", info.frames, frames)) if got != want]
    expected_duration = frames / fps
    if abs(info.duration - float(expected_duration)) > 1.5 / float(fps):
        problems.append(f"duration {info.duration:.3f} s (expected {float(expected_duration):.3f} s)")
    if problems:
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{path}: " + ", ".join(problems))


def require_moving(frames: dict[int, np.ndarray], what: str) -> None:
    """Successive sampled frames must differ: a frozen video repeats one picture."""
    indices = sorted(frames)
    for a, b in zip(indices, indices[1:]):
        if mean_abs_diff(frames[a], frames[b]) < SAME_FRAME_MAD:
            raise CheckFailed(Cause.OUTPUT_INVALID, f"{what} is frozen: frames {a} and {b} are the same picture")


def require_seams(decoded: dict[int, np.ndarray], serial: dict[int, np.ndarray], tolerance: float, what: str) -> None:
    """Each decoded frame (0-based index) must show the serial render's frame of the same index,
    and look more like it than like its neighbours: a dropped or duplicated frame at a seam shifts
    the pictures by one."""
    for index, picture in sorted(decoded.items()):
        own = mean_abs_diff(picture, serial[index])
        for neighbour in (index - 1, index + 1):
            if neighbour in serial and mean_abs_diff(picture, serial[neighbour]) < own:
                raise CheckFailed(Cause.OUTPUT_INVALID,
                                  f"{what}: frame {index} shows frame {neighbour} of the serial render: "
                                  "a frame was dropped or duplicated at a seam")
        if own > tolerance:
            raise CheckFailed(Cause.OUTPUT_INVALID,
                              f"{what}: frame {index} differs from the serial render's (mean abs diff {own:.2f} > {tolerance})")
