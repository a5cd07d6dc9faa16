"""Reading and writing the files the gate trusts (verdicts, attestations, keys) so that no file can
hang, crash or redirect it: only regular files are read (a FIFO or a device is refused at once,
never waited on), within a size bound; JSON is strict (UTF-8, no duplicate keys, no NaN, nesting
bounded); files are written whole and in place of whatever the path was (a symlink there is
replaced, never followed onto what it points to).
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

MAX_DEPTH = 32  # a verdict nests 6 deep; anything near Python's recursion limit crashes its readers


class Unusable(Exception):
    """A file or a document that cannot be used; the message says why, without the path (the caller adds it)."""


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file (a symlink to one is followed: a mounted secret is one); Unusable
    for anything else, for a file over `max_bytes`, and FileNotFoundError when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens without a writer: no hang
    except FileNotFoundError:
        raise
    except OSError as e:
        raise Unusable(f"cannot be read ({e.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Unusable("not a regular file (a folder, a pipe or a device)")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > max_bytes:
            raise Unusable(f"{info.st_size} bytes, more than the {max_bytes} allowed")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Unusable(f"more than the {max_bytes} bytes allowed")
    return data


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    found = {}
    for key, value in pairs:
        if key in found:
            raise Unusable(f"the key {key[:64]!r} appears twice in one object (which one counts is a guess)")
        found[key] = value
    return found


def _no_constant(name: str):
    raise Unusable(f"{name} is not a number JSON allows")


def parse(data: bytes | str) -> object:
    """Strict JSON: UTF-8, each key once per object, no NaN or Infinity, at most MAX_DEPTH deep."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise Unusable(f"not UTF-8 (byte {e.start})") from None
    except RecursionError:
        raise Unusable(f"nested more than {MAX_DEPTH} deep") from None
    except ValueError as e:
        raise Unusable(f"not JSON ({str(e)[:200]})") from None
    depth_within(document)
    return document


def depth_within(document: object, limit: int = MAX_DEPTH) -> None:
    """Unusable when `document` nests lists and objects more than `limit` deep (walked without recursion)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                raise Unusable(f"nested more than {limit} deep")
            stack += [(v, depth + 1) for v in (value.values() if isinstance(value, dict) else value)]


def write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a reader never sees half of it), in place of whatever the
    path was: a symlink there is replaced, never written through. OSError when it cannot be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(21, "a folder is in the way", str(path))  # os.replace would put the file inside it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # readable as any report is (mkstemp makes it the owner's only)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
