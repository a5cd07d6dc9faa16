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


def rewrite_checks_only(pluginmanager) -> None:
    """Assertion rewriting for the checks (test modules, the plugin's hook modules), not for the
    rest of rendergate: pytest marks a plugin's whole package for it, and rewriting skips Python's
    bytecode, so every process (xdist's controller and each worker) would compile the package again
    where no rewritten copy can be cached. The library's own code asserts nothing it reports."""
    marked = getattr(getattr(pluginmanager, "rewrite_hook", None), "_must_rewrite", None)
    if isinstance(marked, set):
        marked.discard("rendergate")
