"""The API's start-up rules: who may reach it, TLS files, client limits and the open-file limit."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from monitor.api import listener
from monitor.api.server import FD_RESERVE, file_limited
from monitor.config import Config, parse
from monitor.errors import ConfigError
from tests.tlscerts import make_ca_and_server_cert


def config(tmp_path: Path, **api: object) -> Config:
    return parse({"agent": {"state_dir": str(tmp_path)}, "api": api}, "hostmon.toml", environ={"T": "t" * 20})


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    issued = make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))
    return {"tls_cert_file": str(issued.cert_file), "tls_key_file": str(issued.key_file)}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_needs_neither_token_nor_tls(tmp_path, host):
    assert listener.problems(config(tmp_path, host=host)) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "monitor.example.com", ""])
def test_beyond_loopback_without_token_and_tls_is_refused_naming_what_is_missing(tmp_path, host):
    (problem,) = listener.problems(config(tmp_path, host=host))
    assert problem.startswith(f"hostmon.toml: api.host: {host!r} is reachable from other machines")
    assert "has no token (api.token_file) and no TLS (api.tls_cert_file);" in problem


def test_a_token_without_tls_is_refused_too_it_would_cross_the_network_in_clear(tmp_path):
    (problem,) = listener.problems(config(tmp_path, host="0.0.0.0", token_env="T"))
    assert "the API has no TLS (api.tls_cert_file);" in problem


def test_tls_without_a_token_is_refused_anyone_could_read(tmp_path, tls):
    (problem,) = listener.problems(config(tmp_path, host="0.0.0.0", **tls))
    assert "the API has no token (api.token_file);" in problem


def test_token_and_tls_or_an_explicit_opt_out_may_serve_beyond_loopback(tmp_path, tls):
    assert listener.problems(config(tmp_path, host="0.0.0.0", token_env="T", **tls)) == []
    assert listener.problems(config(tmp_path, host="0.0.0.0", allow_insecure=True)) == []


def test_tls_files_that_do_not_load_are_named(tmp_path, tls):
    (problem,) = listener.problems(
        config(tmp_path, tls_cert_file=str(tmp_path / "nope.pem"), tls_key_file=tls["tls_key_file"])
    )
    assert problem.startswith("hostmon.toml: api.tls_cert_file: cannot load")
    assert "No such file" in problem
    mismatched = make_ca_and_server_cert(tmp_path / "other")
    (problem,) = listener.problems(
        config(tmp_path, tls_cert_file=tls["tls_cert_file"], tls_key_file=str(mismatched.key_file))
    )
    assert "api.tls_cert_file: cannot load" in problem


def test_a_tls_context_is_built_from_a_certificate_and_its_key(tmp_path, tls):
    context = listener.tls_context(config(tmp_path, **tls).api)
    assert context is not None and context.minimum_version >= listener.ssl.TLSVersion.TLSv1_2
    assert listener.tls_context(config(tmp_path).api) is None


@pytest.mark.parametrize(
    ("api", "key", "message"),
    [
        ({"connection_limit": 5}, "api.connection_limit", "must be 10 to 100000"),
        ({"max_connections_per_client": 2000}, "api.max_connections_per_client", "to api.connection_limit"),
        ({"idle_timeout_s": 0}, "api.idle_timeout_s", "must be 1 to 3600"),
        ({"request_timeout_s": 0}, "api.request_timeout_s", "more than 0"),
        ({"tls_cert_file": "/c.pem"}, "api.tls_key_file", "set both or neither"),
        ({"allow_insecure": "yes"}, "api.allow_insecure", "expected true or false"),
    ],
)
def test_client_limits_and_tls_keys_are_validated(tmp_path, api, key, message):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, **api)
    assert any(p.startswith(f"hostmon.toml: {key}: ") and message in p for p in info.value.problems)


def test_the_defaults_bound_every_client(tmp_path):
    api = config(tmp_path).api
    assert (api.connection_limit, api.max_connections_per_client) == (1000, 32)
    assert (api.idle_timeout_s, api.request_timeout_s, api.allow_insecure) == (30.0, 10.0, False)


class Limits:
    """The open-file limit handed in: (soft, hard), and whether raising it is allowed."""

    def __init__(self, soft: int, hard: int, *, may_raise: bool = True) -> None:
        self.value = (soft, hard)
        self.may_raise = may_raise

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.value

    def set(self, which: int, value: tuple[int, int]) -> None:
        if not self.may_raise:
            raise OSError(1, "Operation not permitted")  # what systemd's @resources filter answers
        self.value = value


def test_the_soft_open_file_limit_is_raised_to_hold_the_connections():
    limits = Limits(1024, 524288)
    assert file_limited(1000, getrlimit=limits.get, setrlimit=limits.set) == 1000
    assert limits.value == (1000 + FD_RESERVE, 524288)


def test_a_limit_that_cannot_be_raised_lowers_the_connection_limit_and_says_how_to_fix_it(caplog):
    limits = Limits(1024, 1024, may_raise=False)
    assert file_limited(1000, getrlimit=limits.get, setrlimit=limits.set) == 1024 - FD_RESERVE
    assert f"LimitNOFILE={1000 + FD_RESERVE}" in caplog.text


def test_a_hard_limit_below_the_need_is_used_as_far_as_it_goes():
    limits = Limits(256, 512)
    assert file_limited(1000, getrlimit=limits.get, setrlimit=limits.set) == 512 - FD_RESERVE
    assert limits.value == (512, 512)
