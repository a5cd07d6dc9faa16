"""Checking rendered outputs: a video's stream facts through ffprobe, frames pulled out of it,
and images compared pixel by pixel on the host. Producing outputs (the workloads) and judging
them (here) are separate pieces."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image

from .diagnosis import Cause, CheckFailed

# A frame whose pixels vary less than this (standard deviation, 0-255) shows nothing.
BLANK_STD = 2.0
# Two frames whose mean absolute difference is below this (0-255) are the same picture: frozen.
SAME_FRAME_MAD = 0.5


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float


def parse_ffprobe(text: str) -> VideoInfo:
    """`ffprobe -count_frames -show_entries stream=...:format=duration -of json` of one video stream."""
    data = json.loads(text)
    streams = data.get("streams") or []
    if not streams:
        raise ValueError("no video stream")
    s = streams[0]
    return VideoInfo(codec=s.get("codec_name", ""), width=int(s.get("width", 0)), height=int(s.get("height", 0)),
                     fps=Fraction(s.get("r_frame_rate", "0/1")), frames=int(s.get("nb_read_frames", 0)),
                     duration=float(data.get("format", {}).get("duration", 0.0)))


def probe_video(target, path: str) -> VideoInfo:
    """The video's facts, decoding every frame to count them; an unreadable file fails as such."""
    result = target.run(f"ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                        f"stream=codec_name,width,height,r_frame_rate,nb_read_frames:format=duration -of json {path}")
    try:
        if result.rc != 0:
            raise ValueError(result.output.strip().splitlines()[-1] if result.output.strip() else f"exit {result.rc}")
        return parse_ffprobe(result.stdout)
    except ValueError as e:
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{path} is not a playable video: {e}") from None


def extract_frames(target, video: str, indices: list[int]) -> dict[int, bytes]:
    """Decode the frames at `indices` (0-based) inside the target and bring them back as PNGs."""
    folder = f"{video}.frames"
    select = "+".join(f"eq(n\\,{i})" for i in indices)
    target.check(f"rm -rf {folder} && mkdir -p {folder} && ffmpeg -v error -nostdin -i {video} "
                 f"-vf \"select='{select}'\" -vsync 0 {folder}/%d.png", f"extracting frames {indices} of {video}")
    return {index: target.fetch(f"{folder}/{n}.png") for n, index in enumerate(sorted(indices), start=1)}


def frames_of(target, video: str, indices: list[int]) -> dict[int, np.ndarray]:
    """extract_frames(), as arrays."""
    return {index: load_image(png) for index, png in extract_frames(target, video, indices).items()}


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
    """The stream is what was asked for, and every expected frame decodes."""
    if info.frames < frames:
        raise CheckFailed(Cause.OUTPUT_INVALID, f"{path} is truncated: {info.frames} of {frames} frames decode")
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
