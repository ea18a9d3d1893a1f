"""Root of the pytest plugin: everything lives in harness.plugin."""
pytest_plugins = ["harness.plugin"]
