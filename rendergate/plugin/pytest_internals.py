"""The parts of pytest that are not its public API, reached in this one place so that a pytest
upgrade that moves them breaks here, visibly."""
from __future__ import annotations

from _pytest.junitxml import xml_key  # where pytest keeps its JUnit writer (record_testsuite_property writes there)


def junit_xml(config):
    """The run's JUnit writer (--junitxml), or None."""
    return config.stash.get(xml_key, None)


def line_open(terminal) -> bool:
    """Whether the terminal's current line was left unended (xdist writes its progress letters so)."""
    return bool(terminal._tw.width_of_current_line)
