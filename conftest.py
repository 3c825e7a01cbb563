# The fake upstreams' fixtures, for every test module (tests/conftest.py has the rest).
pytest_plugins = ["tests.fakes.fixtures", "tests.api_server", "tests.reliability_support"]
