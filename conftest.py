"""Root conftest: loads rendergate's pytest glue so its options show in `pytest --help`."""
pytest_plugins = ["fixtures.session", "fixtures.outcomes", "fixtures.report"]
