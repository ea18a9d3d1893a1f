"""Root of the pytest plugin: the lab and markers (harness.plugin), results for the matrix (collector)."""
pytest_plugins = ["harness.plugin", "harness.report.collector"]
