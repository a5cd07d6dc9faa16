"""Root conftest of the checkout: rendergate's plugin comes from the package's `pytest11` entry
point (`make setup` installs the checkout editable), as in a user's repo; a pytest without it
says so in one line instead of failing on unknown options."""
import pytest


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("rendergate"):
        raise pytest.UsageError("rendergate's pytest plugin is not installed in this Python: run `make setup` "
                                "(pip install -e '.[test,modal]') and use .venv/bin/pytest")
