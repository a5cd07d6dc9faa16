"""rendergate's pytest plugin (the `pytest11` entry point), by what each part does:

- options: the command line and ini options;
- run: the run's configuration, whether it validates at all, and the process owning its targets;
- collection: the suites and folders of checks collected, each check over the run's cells;
- schedule: the order checks run in (the longest first), from what they took last time here;
- pool: the targets the checks use, one per cell, shared by the run's workers;
- gating: a check's outcome as one line, GPU checks gated on a GPU host, reports redacted;
- selection, verdict_log: what the run was asked to run, and a verdict per variant (terminal, JUnit);
- html_report: the report reviewers read; check_modules: the modules the requirement registry learns;
- pytest_internals: the one place pytest's private parts are reached.

What a check asks for (`target`, `variant`, `gpus`, `measure`, ...) is rendergate.fixtures'.
"""
import pytest

from rendergate.core.requirements import Requirement
from rendergate.plugin.pytest_internals import rewrite_checks_only

pytest_plugins = ["rendergate.plugin.run", "rendergate.plugin.options", "rendergate.plugin.schedule",
                  "rendergate.plugin.collection", "rendergate.plugin.gating", "rendergate.plugin.verdict_log", "rendergate.plugin.html_report",
                  "rendergate.fixtures.targets", "rendergate.fixtures.evidence"]


def pytest_addhooks(pluginmanager):
    rewrite_checks_only(pluginmanager)  # as this plugin registers, before its modules below are imported


def requires(requirement: Requirement) -> pytest.MarkDecorator:
    """The mark of the checks that prove a requirement (a module's `pytestmark`, or a decorator)."""
    return pytest.mark.requires(requirement.key)
