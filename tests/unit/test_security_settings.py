"""Security settings: secrets from the env or files, never printed; client options from them."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from engine.kafka_clients import faust_credentials, kafka_options
from engine.redis_clients import redis_auth, redis_user
from engine.settings import SettingsError, load_settings
from engine.worker_process import settings_env
from features.client import RedisAuth, connect, redact


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SEGFLOW_"):
            monkeypatch.delenv(name)


@pytest.fixture()
def ca_file(tmp_path: Path) -> Path:
    """A CA certificate the ssl module can load (Python's own test CA is not shipped: make one)."""
    import subprocess

    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=test-ca"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def test_defaults_are_plaintext_without_credentials() -> None:
    s = load_settings()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert (s.kafka_username, s.kafka_secret, s.redis_username, s.redis_secret) == ("", "", "", "")
    assert kafka_options(s) == {"bootstrap_servers": s.kafka_bootstrap, "security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None


def test_password_from_env_is_a_secret_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SEGFLOW_KAFKA_USERNAME", "segflow")
    monkeypatch.setenv("SEGFLOW_KAFKA_PASSWORD", "hunter2-kafka")
    s = load_settings()
    assert isinstance(s.kafka_password, SecretStr)
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    options = kafka_options(s)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "segflow")
    assert options["sasl_plain_password"] == "hunter2-kafka"
    assert "ssl_context" not in options
    # A child process gets the secret itself (its environment is not logged).
    assert settings_env(s)["SEGFLOW_KAFKA_PASSWORD"] == "hunter2-kafka"


def test_password_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "kafka.password"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("SEGFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SEGFLOW_KAFKA_USERNAME", "segflow")
    monkeypatch.setenv("SEGFLOW_KAFKA_PASSWORD_FILE", str(secret))
    s = load_settings()
    assert s.kafka_secret == "from-a-file"
    assert kafka_options(s)["sasl_plain_password"] == "from-a-file"
    assert settings_env(s)["SEGFLOW_KAFKA_PASSWORD_FILE"] == str(secret)


def test_redis_password_file_and_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "redis.password"
    secret.write_text("r-secret")
    monkeypatch.setenv("SEGFLOW_REDIS_USERNAME", "segflow")
    monkeypatch.setenv("SEGFLOW_REDIS_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("SEGFLOW_REDIS_SSL_CAFILE", "/etc/ca.pem")
    s = load_settings()
    assert redis_auth(s) == RedisAuth("segflow", "r-secret", "/etc/ca.pem")
    assert "r-secret" not in repr(redis_auth(s))
    assert redis_user(s) == "segflow"
    assert redis_user(s.model_copy(update={"redis_url": "rediss://other:pw@h:1/0"})) == "other"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SEGFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs SEGFLOW_KAFKA_USERNAME"),
        ({"SEGFLOW_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SEGFLOW_KAFKA_SECURITY_PROTOCOL"),
        ({"SEGFLOW_KAFKA_SASL_MECHANISM": "MD5"}, "SEGFLOW_KAFKA_SASL_MECHANISM"),
        ({"SEGFLOW_REDIS_PASSWORD_FILE": "/no/such/file"}, "cannot read secret file /no/such/file"),
        ({"SEGFLOW_REDIS_PASSWORD": "x", "SEGFLOW_REDIS_PASSWORD_FILE": "/etc/hostname"}, "not both"),
    ],
)
def test_security_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_sasl_ssl_options_verify_the_broker(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    monkeypatch.setenv("SEGFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SEGFLOW_KAFKA_USERNAME", "segflow")
    monkeypatch.setenv("SEGFLOW_KAFKA_PASSWORD", "pw")
    monkeypatch.setenv("SEGFLOW_KAFKA_SSL_CAFILE", str(ca_file))
    s = load_settings()
    context = kafka_options(s)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    credentials = faust_credentials(s)
    assert type(credentials).__name__ == "SASLCredentials"
    assert credentials.protocol.value == "SASL_SSL"  # type: ignore[union-attr]
    assert credentials.mechanism.value == "SCRAM-SHA-512"  # type: ignore[union-attr]
    assert "pw" not in repr(credentials)


def test_ssl_only(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    monkeypatch.setenv("SEGFLOW_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("SEGFLOW_KAFKA_SSL_CAFILE", str(ca_file))
    s = load_settings()
    options = kafka_options(s)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert type(faust_credentials(s)).__name__ == "SSLCredentials"


def test_redis_urls_with_credentials() -> None:
    assert redact("rediss://u:p%40ss@127.0.0.1:6380/0") == "rediss://u:****@127.0.0.1:6380/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    client = connect("rediss://127.0.0.1:6380/0", RedisAuth("segflow", "pw", "/etc/ca.pem"))
    kwargs = client.connection_pool.connection_kwargs  # type: ignore[union-attr]
    assert (kwargs["username"], kwargs["password"]) == ("segflow", "pw")
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert client.connection_pool.connection_class.__name__ == "HiredisPackedSSLConnection"  # type: ignore[union-attr]
    in_url = connect("redis://a:b@127.0.0.1:6379/0", RedisAuth("segflow", "pw"))
    url_kwargs = in_url.connection_pool.connection_kwargs  # type: ignore[union-attr]
    assert (url_kwargs["username"], url_kwargs["password"]) == ("a", "b")  # the URL's win
    with pytest.raises(ValueError) as info:
        connect("http://u:secret@h:1")
    assert "secret" not in str(info.value)
