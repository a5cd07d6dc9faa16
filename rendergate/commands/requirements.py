"""`rendergate requirements`: the requirement keys a manifest may declare (the registry), as a table."""
from __future__ import annotations

from rendergate.core import requirements


def add(sub) -> None:
    sub.add_parser("requirements", help="the requirement keys a manifest may declare, as a Markdown table")


def run(args) -> int:
    print(requirements.docs_table(), end="")
    return 0
