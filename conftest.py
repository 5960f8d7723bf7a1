"""exitgate's root conftest: the plugin holds the options, markers, fixtures and parametrization.

``pytester`` is loaded for the self-tests in ``tests/``, which run the suites in subprocesses.
"""

pytest_plugins = ["fixtures.plugin", "pytester"]
