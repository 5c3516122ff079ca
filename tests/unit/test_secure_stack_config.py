"""The secure stack's generated configs (no servers): listeners, authorizer, ACLs, no plaintext."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.settings import Settings, load_settings
from engine.stack import secure, secure_kafka, secure_redis


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("SEGFLOW_"):
            monkeypatch.delenv(name)
    return load_settings(stack_dir=tmp_path / "stack")


def test_passwords_are_generated_once_and_private(settings: Settings) -> None:
    paths = secure.SecurePaths.of(settings)
    first = secure.password(paths, "kafka", secure.WORKER)
    assert len(first) >= 24 and secure.password(paths, "kafka", secure.WORKER) == first
    assert secure.password(paths, "redis", secure.WORKER) != first
    mode = stat.S_IMODE(paths.password_file("kafka", secure.WORKER).stat().st_mode)
    assert mode == 0o600


def test_kafka_properties_sasl_ssl_only_with_an_authorizer(settings: Settings) -> None:
    text = secure_kafka.render_properties(settings)
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "PLAINTEXT" not in text.replace("SASL_PLAINTEXT", "")
    # The worker's password is not in the broker's config (only the admin's, for the broker itself).
    worker = secure.password(secure.SecurePaths.of(settings), "kafka", secure.WORKER)
    assert worker not in text


def test_worker_acls_are_prefixed_by_the_app_id() -> None:
    args = secure_kafka.worker_acl_args("segflow")
    assert "--topic=segflow." in args and "--group=segflow" in args
    assert "--resource-pattern-type=prefixed" in args and "--allow-principal=User:segflow" in args


def test_redis_tls_only_and_acl_users(settings: Settings) -> None:
    conf = secure_redis.render_secure_conf(settings)
    assert "port 0" in conf.splitlines() and "tls-port 16380" in conf.splitlines()
    assert "bind 127.0.0.1" in conf.splitlines()
    acl = secure_redis.render_acl(settings)
    lines = acl.splitlines()
    assert lines[0].startswith("user default off")
    worker = next(line for line in lines if line.startswith("user segflow "))
    assert " ~sf:* " in worker and "-@dangerous" in worker and "+@scripting" in worker
    for user in (secure.ADMIN, secure.WORKER):
        assert secure.password(secure.SecurePaths.of(settings), "redis", user) not in acl  # hashed only


def test_client_settings_point_at_the_secure_stack(settings: Settings) -> None:
    password = secure.password(secure.SecurePaths.of(settings), "kafka", "segflow")  # as `up` makes it
    client = secure.client_settings(settings)
    assert (client.kafka_bootstrap, client.kafka_security_protocol) == ("127.0.0.1:19094", "SASL_SSL")
    assert client.redis_url == "rediss://127.0.0.1:16380/0"
    assert client.kafka_username == client.redis_username == "segflow"
    assert client.kafka_secret == password
    env = secure.write_client_env(settings).read_text()
    assert "SEGFLOW_KAFKA_PASSWORD_FILE=" in env and client.kafka_secret not in env
