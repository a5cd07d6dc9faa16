"""What a valid manifest value is: small validators that the manifest's own tables and every
requirement's declaration (rendergate.core.requirements) are written with. Each takes a value parsed
from TOML and says whether it is one; the message saying what a valid one looks like is the
declaration's."""
from __future__ import annotations

import math
import re

MAX_ITEMS = 64  # items of a list (encoders, device types, command words)
MAX_TEXT = 1024  # characters of a string (a command word, an env value, a path)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def boolean(v) -> bool:
    return isinstance(v, bool)


def text(v, limit=MAX_TEXT) -> bool:
    """A non-empty one-line string: no control characters (NUL, newline, escape ...)."""
    return isinstance(v, str) and 0 < len(v) <= limit and not CONTROL.search(v)


def word(v) -> bool:
    """A name such as an ffmpeg encoder or a vendor: letters, digits and _ . -."""
    return isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v) is not None


def path_word(v) -> bool:
    return text(v) and not any(c.isspace() for c in v)


def list_of(item):
    """A non-empty list of distinct values, each one `item`."""
    return lambda v: (isinstance(v, list) and 0 < len(v) <= MAX_ITEMS and all(item(x) for x in v)
                      and len(set(v)) == len(v))


def one_of(choices):
    return lambda v: isinstance(v, str) and v in choices


def number(low, high, low_open=True):
    """A finite number in (low, high] (or [low, high] when not low_open)."""
    return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                      and (v > low if low_open else v >= low) and v <= high)


def integer(low, high):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def table(schema, optional=None):
    """An inline table with every key of `schema` (and perhaps some of `optional`), each valid."""
    known = {**schema, **(optional or {})}
    return lambda v: (isinstance(v, dict) and set(schema) <= set(v) <= set(known)
                      and all(known[k](x) for k, x in v.items()))


def env(v) -> bool:
    """A table of environment variables: NAME = "value", names of letters, digits and _, values of one line."""
    return (isinstance(v, dict) and len(v) <= MAX_ITEMS
            and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", k) for k in v)
            and all(isinstance(x, str) and len(x) <= MAX_TEXT and not CONTROL.search(x) for x in v.values()))


def size(v) -> bool:
    """WIDTHxHEIGHT in ASCII digits, even (H.264 in yuv420p needs it), 16x16 to 7680x4320."""
    match = isinstance(v, str) and re.fullmatch(r"([0-9]{2,4})x([0-9]{2,4})", v)
    width, height = (int(n) for n in match.groups()) if match else (0, 0)
    return 16 <= width <= 7680 and 16 <= height <= 4320 and width % 2 == height % 2 == 0


SIZE = '"WIDTHxHEIGHT", even, 16x16 to 7680x4320'
SPEEDUP = (number(0, 1000), "a speedup, a number above 0 and at most 1000")
