from .helpers import ec_key, rsa_key  # noqa: F401 - session-scoped key fixtures for every vendor test
