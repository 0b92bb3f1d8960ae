import pytest

from tests.core.helpers import ScriptedDestinations


@pytest.fixture
def scripted():
    return ScriptedDestinations()
