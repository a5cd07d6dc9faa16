"""Secrets never reach a report or a log: everything written there passes through redact(). And
what an image or a verdict says never drives a terminal: printable() shows its control characters
as escapes.

Two nets: the values of secret-named environment variables (this process's, and those the
manifests hand to containers) are blanked wherever they appear; and text that looks like a
secret by its shape (NAME=value for secret-like names, credentials in URLs, well-known token
formats) is blanked even when its value was never seen.
"""
from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping

REDACTED = "[redacted]"
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:TOKEN|SECRET|PASSWORD|PASSWD|APIKEY|_KEY(?![A-Za-z])|CREDENTIALS?)[A-Za-z0-9_.-]*"
_IS_SECRET_NAME = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)
_PATTERNS = [
    # NAME=value, NAME: value, "NAME": "value", --name=value, --name value
    re.compile(rf"(?i)(\b{_SECRET_NAME}[\"']?\s*[=:]\s*[\"']?)([^\s\"',;]{{4,}})"),
    re.compile(rf"(?i)(--{_SECRET_NAME}\s+)([^\s\"',;-][^\s\"',;]{{3,}})"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)"),  # scheme://user:password@host
    re.compile(r"(?i)(\bbearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
    re.compile(r"()\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}"
               r"|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,}|a[ks]-[A-Za-z0-9]{16,}"
               r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)\b"),
]
_known: set[str] = set()


def secret_named(name: str) -> bool:
    """Whether a variable (or label) of this name holds a secret by its name: its value is never shown."""
    return bool(_IS_SECRET_NAME.match(name))


def remember_secrets(env: Mapping[str, str]) -> None:
    """Blank, from now on, the values of the secret-named entries of `env`."""
    _known.update(v for k, v in env.items() if _IS_SECRET_NAME.match(k) and isinstance(v, str) and len(v) >= 4)


def redact(text: str) -> str:
    for value in sorted(_known, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED + (m.group(3) if m.re.groups >= 3 else ""), text)
    return text


remember_secrets(os.environ)


def printable(text: str) -> str:
    """`text` as one inert line: control and format characters (escape sequences, carriage
    returns, newlines, bidi overrides) and lone surrogates (unprintable) shown as escapes, so an image's output or a verdict's
    words can neither move the cursor, recolour, nor forge a line of rendergate's own."""
    return "".join(c if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 12] + " [... cut]"
