"""exitgate's root conftest: the plugin holds the options, markers, fixtures and parametrization."""

pytest_plugins = ["fixtures.plugin"]
