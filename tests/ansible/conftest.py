"""Fixtures for the Ansible tests: the roles' templates rendered by Ansible itself, once."""

from __future__ import annotations

import pytest

from tests.ansible.helpers import render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("rendered") / "rendered.json")
