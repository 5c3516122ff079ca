"""What the secure stack refuses, and how segflow says so: one line at start-up, exit 1, no
traceback, no password in the output.

* a wrong Kafka password, a wrong Redis password;
* a Redis user whose ACL does not cover the key prefix (NOPERM), at start-up, and when the ACL is
  narrowed while the worker runs (it stops with one line instead of retrying forever);
* a Kafka user with valid credentials but no ACLs for the app's group and topics.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from secure_helpers import (  # noqa: F401 (fixtures)
    admin_settings,
    run_worker_until_exit,
    secure_settings,
    secure_stack,
    wait_applied,
)

from engine.cli.io import produce_lines
from engine.kafka_clients import KafkaAccessError
from engine.settings import Settings
from engine.stack import secure_kafka, secure_redis
from engine.topics import ensure_topics
from engine.worker_process import free_port, start_worker, stop_worker
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration


def secret_file(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def assert_one_line_refusal(code: int, output: str, *expected: str, secrets_: tuple[str, ...] = ()) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1, output
    assert len(lines) == 1 and lines[0].startswith("segflow: error: "), output
    assert "Traceback" not in output
    for part in expected:
        assert part in lines[0], lines[0]
    for secret in secrets_:
        assert secret not in output
    return lines[0]


def test_wrong_kafka_password(secure_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    wrong = secrets.token_urlsafe(16)
    settings = secure_settings.model_copy(update={"kafka_password_file": secret_file(tmp_path, "k", wrong)})
    code, output = run_worker_until_exit(settings, tmp_path / "worker.log")
    line = assert_one_line_refusal(
        code, output, "refused user 'segflow'", "wrong username or password", secrets_=(wrong,)
    )
    assert "SCRAM-SHA-512" in line


def test_wrong_redis_password(secure_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    wrong = secrets.token_urlsafe(16)
    settings = secure_settings.model_copy(update={"redis_password_file": secret_file(tmp_path, "r", wrong)})
    code, output = run_worker_until_exit(settings, tmp_path / "worker.log")
    assert_one_line_refusal(code, output, "Redis at rediss://", "refused user 'segflow'", secrets_=(wrong,))


def test_redis_user_without_the_prefix_is_refused(secure_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    user, password = f"outsider-{secure_settings.key_prefix[-8:]}", secrets.token_urlsafe(16)
    admin = secure_redis.admin_client(secure_settings)
    # Every command the worker needs, on other keys only.
    rules = secure_redis.worker_acl("elsewhere").split()
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", *rules)
    try:
        settings = secure_settings.model_copy(
            update={"redis_username": user, "redis_password_file": secret_file(tmp_path, "r", password)}
        )
        code, output = run_worker_until_exit(settings, tmp_path / "worker.log")
        assert_one_line_refusal(
            code, output, f"Redis user {user!r} may not use segflow's keys", "no permissions", "~sf:t",
            secrets_=(password,),
        )  # fmt: skip
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_an_acl_narrowed_while_the_worker_runs_stops_it_with_one_line(
    secure_settings: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    user, password = f"narrowed-{secure_settings.key_prefix[-8:]}", secrets.token_urlsafe(16)
    admin = secure_redis.admin_client(secure_settings)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", *secure_redis.worker_acl(
        secure_settings.key_prefix).split())  # fmt: skip
    settings = secure_settings.model_copy(
        update={
            "redis_username": user,
            "redis_password_file": secret_file(tmp_path, "r", password),
            "web_port": free_port(),
        }
    )
    events = list(generate_events(PopulationConfig(customers=5, days=2, seed=3)))
    write_jsonl(events, tmp_path / "events.jsonl")
    asyncio.run(ensure_topics(settings))
    path, topic = tmp_path / "events.jsonl", settings.events_topic
    assert asyncio.run(produce_lines(settings, path, "jsonl", "msgpack", False, topic)) == len(events)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        wait_applied(settings, log, len(events))
        # The worker's keys are taken away: every step it takes now is refused (NOPERM).
        admin.execute_command("ACL", "SETUSER", user, "resetkeys", "~elsewhere:*")
        code = worker.wait(60)
    finally:
        stop_worker(worker)
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()
    output = log.read_text()
    refusals = [line for line in output.splitlines() if "may not use segflow's keys" in line]
    assert code == 1, output[-3000:]
    assert len(refusals) == 1 and "ERROR" in refusals[0] and "stopping at the" in refusals[0], refusals
    assert "Traceback" not in output and "retrying" not in output, output[-3000:]
    assert password not in output


def test_kafka_user_without_acls_is_not_authorized(secure_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    user, password = f"noacl-{secure_settings.key_prefix[-8:]}", secrets.token_urlsafe(16)
    secure_kafka.add_user(admin_settings(secure_settings), user, password)
    settings = secure_settings.model_copy(
        update={"kafka_username": user, "kafka_password_file": secret_file(tmp_path, "k", password)}
    )
    code, output = run_worker_until_exit(settings, tmp_path / "worker.log")
    assert_one_line_refusal(
        code, output, f"did not authorize user {user!r}", f"use consumer group {settings.app_id!r}",
        secrets_=(password,),
    )  # fmt: skip
    # Past the group check, creating the topics is refused at the topic ACLs, as clearly.
    with pytest.raises(KafkaAccessError) as info:
        asyncio.run(ensure_topics(settings))
    refused = f"did not authorize user {user!r} (SCRAM-SHA-512) to create topic '{settings.app_id}."
    assert refused in str(info.value)
