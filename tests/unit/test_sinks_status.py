"""What the InfluxDB sinks send, and how every HTTP answer becomes our error (or success).

The answers come from a tiny local HTTP server on 127.0.0.1 (a fake *server*, for status codes
the real servers cannot be made to produce); the v2 request is also checked against
InfluxData's OpenAPI contract. Real-server behaviour is in tests/integration/test_sinks.py.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import AuthFailed, ConfigError, Rejected, Unavailable
from monitor.influxhttp import display_url
from monitor.sinks import make_sink
from monitor.sinks._http import error_for_status, parse_retry_after, server_message
from monitor.sinks.influx_v1 import InfluxV1Sink
from tests.helpers import FakeServer, Reply, Seen

NOW_S = 1_700_000_000.0
LINES = [
    "system,host=web-1 cpu_usage_overall=12.5,memory_usage=40 1700000000000",
    "system,host=web-1 cpu_usage_overall=13,memory_usage=41.25 1700000010000",
    r"system,host=web\ 2 disk_read=1024 1700000020000",
]
# InfluxData's contract, vendored in the repository (tests/contracts/README.md says from where)
CONTRACT = Path(__file__).resolve().parents[1] / "contracts" / "influxdb-oss-v2.yml"


# -- the fake server (tests/helpers.py) --------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def v1_sink(url: str, *, gzip_on: bool = False, **kw: object) -> InfluxV1Sink:
    config = SinkConfig(kind="influxdb_v1", url=url, database="metrics", **kw)  # type: ignore[arg-type]
    return InfluxV1Sink(config, ShipperConfig(gzip=gzip_on, timeout_s=5), clock=lambda: NOW_S)


def v2_sink(url: str, *, gzip_on: bool = False, token: str = "v2-secret-token"):  # type: ignore[no-untyped-def]
    from monitor.sinks.influx_v2 import InfluxV2Sink

    config = SinkConfig(kind="influxdb_v2", url=url, org="acme", bucket="hosts", token=token)
    return InfluxV2Sink(config, ShipperConfig(gzip=gzip_on, timeout_s=5), clock=lambda: NOW_S)


# -- pure mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0)])
def test_retry_after_delta_seconds_is_parsed(value, expected):
    assert parse_retry_after(value, NOW_S) == expected


def test_retry_after_http_date_is_seconds_from_the_handed_in_clock():
    when = format_datetime(datetime.fromtimestamp(NOW_S + 90, UTC), usegmt=True)
    assert parse_retry_after(when, NOW_S) == pytest.approx(90.0)


def test_retry_after_in_the_past_means_retry_now():
    when = format_datetime(datetime.fromtimestamp(NOW_S - 90, UTC), usegmt=True)
    assert parse_retry_after(when, NOW_S) == 0.0
    assert parse_retry_after("-5", NOW_S) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf", "Mon, 99 Foo 2024"])
def test_retry_after_missing_or_unparseable_is_none(value):
    assert parse_retry_after(value, NOW_S) is None


def test_server_message_takes_influxdb1_json_error():
    body = b'{"error":"partial write: field type conflict: input field \\"x\\" is type string"}'
    assert server_message(body) == 'partial write: field type conflict: input field "x" is type string'


def test_server_message_takes_influxdb2_json_message():
    assert server_message('{"code":"invalid","message":"unable to parse line 3"}') == "unable to parse line 3"


def test_server_message_of_plain_text_is_one_bounded_line():
    text = server_message(b"cannot parse\nline 1: bad field\n" + b"x" * 1000)
    assert "\n" not in text
    assert text.startswith("cannot parse line 1: bad field x")
    assert len(text) <= 300


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, Rejected),
        (401, AuthFailed),
        (403, AuthFailed),
        (404, Unavailable),
        (413, Rejected),
        (422, Rejected),
        (429, Unavailable),
        (500, Unavailable),
        (502, Unavailable),
        (503, Unavailable),
        (504, Unavailable),
        (307, Unavailable),
    ],
)
def test_http_status_decides_the_error_class(status, cls):
    error = error_for_status("target", status, "why", 3.0)
    assert type(error) is cls
    assert error.status == status
    assert "why" in error.reason
    assert error.retryable == (cls is not Rejected)


def test_display_url_drops_user_info_and_query():
    assert display_url("https://user:pw@db.example:8086/influx/?u=a&p=b") == "https://db.example:8086/influx"


# -- InfluxDB v1 sink ------------------------------------------------------------------------


def test_v1_posts_the_lines_joined_exactly_to_write_with_db_rp_and_ms(server):
    sink = v1_sink(server.url, username="writer", password="pw-1234", retention_policy="week")
    sink.write(LINES)
    sink.close()
    (seen,) = server.seen
    assert seen.path == "/write"
    assert seen.query == {"db": "metrics", "rp": "week", "precision": "ms"}
    assert seen.raw_body == "\n".join(LINES).encode()
    assert "content-encoding" not in seen.headers
    assert seen.headers["content-type"].startswith("text/plain")
    assert seen.headers["authorization"] == "Basic " + base64.b64encode(b"writer:pw-1234").decode()


def test_v1_url_path_prefix_is_kept(server):
    sink = v1_sink(server.url + "/influx/")
    sink.write(LINES[:1])
    assert server.seen[0].path == "/influx/write"
    assert "authorization" not in server.seen[0].headers


def test_v1_gzip_body_decompresses_to_the_exact_lines(server):
    sink = v1_sink(server.url, gzip_on=True)
    sink.write(LINES)
    (seen,) = server.seen
    assert seen.headers["content-encoding"] == "gzip"
    assert seen.raw_body != seen.body
    assert seen.body == "\n".join(LINES).encode()


def test_v1_token_is_sent_as_authorization_token_for_2x_v1_compat(server):
    sink = v1_sink(server.url, token="tok-abcdef", username="ignored", password="ignored")
    sink.write(LINES)
    assert server.seen[0].headers["authorization"] == "Token tok-abcdef"


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after_s", "message"),
    [
        (500, {}, '{"error":"engine: disk full"}', Unavailable, None, "engine: disk full"),
        (503, {"Retry-After": "7"}, "overloaded, try later", Unavailable, 7.0, "overloaded"),
        (
            429,
            {"Retry-After": format_datetime(datetime.fromtimestamp(NOW_S + 30, UTC), usegmt=True)},
            "rate limited",
            Unavailable,
            30.0,
            "rate limited",
        ),
        (401, {}, '{"error":"authorization failed"}', AuthFailed, None, "authorization failed"),
        (403, {}, '{"error":"user is not authorized to write"}', AuthFailed, None, "not authorized"),
        (400, {}, '{"error":"unable to parse \'x\': bad timestamp"}', Rejected, None, "bad timestamp"),
        (422, {}, "unprocessable", Rejected, None, "unprocessable"),
        (404, {}, '{"error":"database not found: \\"metrics\\""}', Unavailable, None, "database not found"),
    ],
)
def test_v1_answer_becomes_the_right_error_with_the_server_message(
    server, status, headers, body, cls, retry_after_s, message
):
    server.answer(status, body, headers)
    with pytest.raises(cls) as info:
        v1_sink(server.url).write(LINES)
    assert type(info.value) is cls
    assert info.value.status == status
    assert message in info.value.reason
    assert getattr(info.value, "retry_after_s", None) == pytest.approx(retry_after_s)


def test_v1_secrets_never_appear_in_name_or_reason_even_if_the_server_echoes_them(server):
    server.answer(401, '{"error":"bad password pw-sekret-99 or token"}')
    sink = v1_sink(server.url.replace("http://", "http://someone:pw-sekret-99@"), password="pw-sekret-99")
    with pytest.raises(AuthFailed) as info:
        sink.write(LINES)
    assert "pw-sekret-99" not in sink.name
    assert "pw-sekret-99" not in str(info.value)
    assert "***" in info.value.reason


def test_v1_reuses_one_keep_alive_connection_for_many_writes(server):
    sink = v1_sink(server.url)
    for _ in range(4):
        sink.write(LINES)
    assert len(server.seen) == 4
    assert len({seen.client_port for seen in server.seen}) == 1


def test_v1_reconnects_once_when_the_server_closed_the_idle_connection(server):
    server.drop_after_reply = True  # closes after each answer without saying so
    sink = v1_sink(server.url)
    sink.write(LINES[:1])
    sink.write(LINES[1:])
    assert [seen.body for seen in server.seen] == [LINES[0].encode(), "\n".join(LINES[1:]).encode()]
    assert server.seen[0].client_port != server.seen[1].client_port


def _413_above(max_lines: int) -> Callable[[Seen], Reply]:
    def reply(seen: Seen) -> Reply:
        if seen.body.count(b"\n") + 1 > max_lines:
            return 413, {}, b'{"error":"Request Entity Too Large"}'
        return 204, {}, b""

    return reply


def test_v1_splits_a_too_large_batch_in_halves_until_it_fits(server):
    server.reply = _413_above(2)
    lines = [f"system,host=a cpu_usage_overall={i} {1700000000000 + i}" for i in range(7)]
    v1_sink(server.url).write(lines)
    accepted = [seen.body.decode() for seen in server.seen if seen.body.count(b"\n") < 2]
    assert "\n".join(accepted).split("\n") == lines


def test_v1_single_line_still_too_large_is_rejected(server):
    server.reply = _413_above(0)
    with pytest.raises(Rejected) as info:
        v1_sink(server.url).write(LINES)
    assert info.value.status == 413
    assert len(server.seen) == 1 + 2 + 2  # 3 lines, halves [1] and [2 → 1 + 1]


def test_v1_empty_batch_sends_nothing(server):
    v1_sink(server.url).write([])
    assert server.seen == []


# -- InfluxDB v2 sink (influxdb-client) ------------------------------------------------------


def test_v2_posts_the_exact_lines_to_api_v2_write_with_org_bucket_ms_and_token(server):
    sink = v2_sink(server.url, gzip_on=True)
    sink.write(LINES)
    sink.close()
    (seen,) = server.seen
    assert seen.path == "/api/v2/write"
    assert seen.query == {"org": "acme", "bucket": "hosts", "precision": "ms"}
    assert seen.headers["authorization"] == "Token v2-secret-token"
    assert seen.headers["content-encoding"] == "gzip"
    assert seen.body == "\n".join(LINES).encode()


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after_s", "message"),
    [
        (500, {}, '{"code":"internal error","message":"store closed"}', Unavailable, None, "store closed"),
        (503, {"Retry-After": "12"}, "", Unavailable, 12.0, "HTTP 503"),
        (
            429,
            {"Retry-After": "3"},
            '{"code":"too many requests","message":"quota"}',
            Unavailable,
            3.0,
            "quota",
        ),
        (
            401,
            {},
            '{"code":"unauthorized","message":"unauthorized access"}',
            AuthFailed,
            None,
            "unauthorized",
        ),
        (
            403,
            {},
            '{"code":"forbidden","message":"insufficient permissions"}',
            AuthFailed,
            None,
            "insufficient",
        ),
        (400, {}, '{"code":"invalid","message":"unable to parse line 2"}', Rejected, None, "unable to parse"),
        (422, {}, '{"code":"unprocessable entity","message":"outside retention"}', Rejected, None, "outside"),
        (
            404,
            {},
            '{"code":"not found","message":"bucket \\"hosts\\" not found"}',
            Unavailable,
            None,
            "not found",
        ),
    ],
)
def test_v2_answer_becomes_the_right_error_with_the_server_message(
    server, status, headers, body, cls, retry_after_s, message
):
    server.answer(status, body, headers)
    sink = v2_sink(server.url)
    with pytest.raises(cls) as info:
        sink.write(LINES)
    sink.close()
    assert type(info.value) is cls
    assert info.value.status == status
    assert message in info.value.reason
    assert getattr(info.value, "retry_after_s", None) == pytest.approx(retry_after_s)
    assert "v2-secret-token" not in str(info.value) + sink.name


def test_v2_splits_a_too_large_batch_in_halves_until_it_fits(server):
    server.reply = _413_above(1)
    sink = v2_sink(server.url)
    sink.write(LINES)
    sink.close()
    accepted = [seen.body.decode() for seen in server.seen if b"\n" not in seen.body]
    assert accepted == LINES


def test_v2_request_conforms_to_influxdata_write_contract(server):
    """Validate the real request influxdb-client sends against the contract's /write operation.

    One correction to the contract, in memory: its text/plain body schema says
    ``format: byte`` (base64), contradicting its own example and every InfluxDB server, which
    take raw line protocol; without removing that, no real client's request could validate.
    """
    yaml = pytest.importorskip("yaml")
    openapi_core = pytest.importorskip("openapi_core")
    from openapi_core.exceptions import OpenAPIError
    from openapi_core.testing import MockRequest
    from openapi_core.validation.request.exceptions import SecurityValidationError

    with CONTRACT.open() as fh:
        spec = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec["paths"]["/write"]["post"]["requestBody"]["content"]["text/plain"]["schema"].pop("format", None)
    api = openapi_core.OpenAPI.from_dict(spec, config=openapi_core.Config(spec_validator_cls=None))

    for gzip_on in (True, False):
        sink = v2_sink(server.url, gzip_on=gzip_on)
        sink.write(LINES)
        sink.close()

    def as_request(seen: Seen, **changes: dict[str, str]) -> MockRequest:
        return MockRequest(
            "http://127.0.0.1",
            seen.method,
            seen.path,
            args=changes.get("query", seen.query),
            headers=changes.get("headers", seen.headers),
            data=seen.body,
            content_type=seen.headers.get("content-type", ""),
        )

    assert [seen.headers.get("content-encoding") for seen in server.seen] == ["gzip", None]
    for seen in server.seen:
        api.validate_request(as_request(seen))  # raises on any violation
        assert seen.headers["authorization"].startswith("Token ")
    # The check can fail: a wrong precision or a missing token is caught.
    seen = server.seen[0]
    with pytest.raises(OpenAPIError, match=r"precision"):
        api.validate_request(as_request(seen, query={**seen.query, "precision": "minutes"}))
    headers = {k: v for k, v in seen.headers.items() if k != "authorization"}
    with pytest.raises(SecurityValidationError):
        api.validate_request(as_request(seen, headers=headers))


# -- TLS: verification on by default, ca_file, or verify_tls = false -------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[FakeServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    fake = FakeServer(tls=context)
    yield fake
    fake.close()


def _tls_sinks(url: str, **kw: object) -> list[object]:
    from monitor.sinks.influx_v2 import InfluxV2Sink

    shipper = ShipperConfig(timeout_s=5)
    v1 = SinkConfig(kind="influxdb_v1", url=url, database="metrics", **kw)  # type: ignore[arg-type]
    v2 = SinkConfig(kind="influxdb_v2", url=url, org="o", bucket="b", token="t", **kw)  # type: ignore[arg-type]
    return [InfluxV1Sink(v1, shipper), InfluxV2Sink(v2, shipper)]


def test_https_with_the_servers_ca_file_is_verified_and_accepted(tls_server, certificate):
    for sink in _tls_sinks(tls_server.url, ca_file=certificate[0]):
        sink.write(LINES)  # type: ignore[attr-defined]
        sink.close()  # type: ignore[attr-defined]
    assert [seen.path for seen in tls_server.seen] == ["/write", "/api/v2/write"]


def test_https_with_an_unknown_certificate_is_unavailable(tls_server):
    for sink in _tls_sinks(tls_server.url):
        with pytest.raises(Unavailable, match=r"(?i)certificate"):
            sink.write(LINES)  # type: ignore[attr-defined]
        sink.close()  # type: ignore[attr-defined]
    assert tls_server.seen == []


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_with_verify_tls_off_accepts_any_certificate(tls_server):
    for sink in _tls_sinks(tls_server.url, verify_tls=False):
        sink.write(LINES)  # type: ignore[attr-defined]
        sink.close()  # type: ignore[attr-defined]
    assert len(tls_server.seen) == 2


# -- make_sink -------------------------------------------------------------------------------


def test_make_sink_builds_the_configured_kind(tmp_path):
    shipper = ShipperConfig()
    kinds = {
        "sqlite": SinkConfig(kind="sqlite", path=tmp_path / "m.db"),
        "influxdb_v1": SinkConfig(kind="influxdb_v1", url="http://127.0.0.1:1", database="d"),
        "influxdb_v2": SinkConfig(
            kind="influxdb_v2", url="http://127.0.0.1:1", org="o", bucket="b", token="t"
        ),
    }
    for kind, config in kinds.items():
        sink = make_sink(config, shipper)
        try:
            assert sink.name.startswith(kind)
        finally:
            sink.close()


def test_make_sink_refuses_an_unknown_kind():
    with pytest.raises(ConfigError, match=r"sink\.kind"):
        make_sink(SinkConfig(kind="graphite"), ShipperConfig())


def test_only_the_v2_sink_imports_influxdb_client(tmp_path):
    code = f"""
import sys
from pathlib import Path
from monitor.config import ShipperConfig, SinkConfig
from monitor.sinks import make_sink
make_sink(SinkConfig(kind="sqlite", path=Path({str(tmp_path / "m.db")!r})), ShipperConfig()).close()
make_sink(SinkConfig(kind="influxdb_v1", url="http://127.0.0.1:1", database="d"), ShipperConfig()).close()
before = sorted(m for m in sys.modules if m.split(".")[0] in ("influxdb_client", "urllib3", "requests"))
v2 = SinkConfig(kind="influxdb_v2", url="http://127.0.0.1:1", org="o", bucket="b", token="t")
make_sink(v2, ShipperConfig())
print(json.dumps([before, "influxdb_client" in sys.modules]))
"""
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True
    ).stdout
    before, after = json.loads(out)
    assert before == []
    assert after is True
