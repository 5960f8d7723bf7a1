"""exitgate's root conftest: the plugins hold the options, markers, fixtures and parametrization
(``fixtures.plugin``) and the run summary (``reports.plugin``). ``pytester`` is for the self-tests
in ``tests/``, which run the suites in subprocesses."""

pytest_plugins = ["fixtures.plugin", "reports.plugin", "pytester"]
