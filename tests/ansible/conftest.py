"""Fixtures for the Ansible tests: the roles' templates rendered by Ansible itself, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ansible.helpers import build_collection, install_collection, render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("rendered") / "rendered.json")


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_collection(tmp_path_factory.mktemp("collection-build"))


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory: pytest.TempPathFactory, collection_tarball: Path) -> Path:
    """The built collection installed into a collections path of its own; that path."""
    path = tmp_path_factory.mktemp("collections")
    install_collection(collection_tarball, path)
    return path
