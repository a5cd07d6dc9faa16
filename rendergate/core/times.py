"""Times as verdicts hold them: RFC 3339 with a zone, read strictly, and spans said briefly."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with its zone ("2026-12-05T09:00:00+00:00", "...Z"); ValueError, saying
    why, for anything else: no zone, an impossible date or hour, an offset beyond ±23:59."""
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise ValueError("not an RFC 3339 time with a zone, such as 2026-12-05T09:00:00+00:00")
    zone = text[-6:]
    if zone[0] in "+-" and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
        raise ValueError(f"the offset {zone} is beyond ±23:59")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"not a real time ({e})") from None


def span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
