"""One typed settings object for every segflow process.

Every field can be set with an environment variable ``SEGFLOW_<FIELD NAME>`` (case-insensitive),
for example ``SEGFLOW_KAFKA_BOOTSTRAP=127.0.0.1:19092``. The defaults describe the local stack
that ``segflow stack up`` starts on loopback. ``segflow config`` prints the values in force.

A *profile* is a file of such ``SEGFLOW_*=value`` lines (``segflow demo`` writes one):
``load_settings`` reads ``segflow --profile FILE``, else the file named by ``SEGFLOW_PROFILE``
(``none`` or empty: no profile), else ``.segflow.env`` in the current directory when there is
one. Environment variables win over the profile's lines.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.schemas import external_model_problem


def _default_stack_dir() -> Path:
    """``.stack`` in the source checkout when running from one, else a per-user cache dir."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "deploy" / "local" / "pom.xml").exists():
        return checkout / ".stack"
    return Path.home() / ".cache" / "segflow" / "stack"


class Settings(BaseSettings):
    """All configuration of segflow; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SEGFLOW_", frozen=True, extra="ignore")

    # Local stack (segflow stack up|down|status)
    stack_dir: Path = Field(default_factory=_default_stack_dir)
    kafka_port: int = Field(19092, ge=1024, le=65535)
    kafka_controller_port: int = Field(19093, ge=1024, le=65535)
    kafka_heap: str = "768m"
    redis_port: int = Field(16379, ge=1024, le=65535)
    redis_cluster_base_port: int = Field(17000, ge=1024, le=65000)
    prometheus_port: int = Field(19090, ge=1024, le=65535)
    """The optional local Prometheus (``segflow stack up --prometheus``) on loopback."""
    secure_kafka_port: int = Field(19094, ge=1024, le=65535)
    """The SASL_SSL listener of ``segflow stack up --secure`` (its controller: this port + 1)."""
    secure_redis_port: int = Field(16380, ge=1024, le=65535)
    """The TLS port of ``segflow stack up --secure``'s Redis (it has no plain-text port)."""
    kafka_proxied_port: int = Field(19096, ge=1024, le=65535)
    """The local broker's second plain-text listener (``PROXIED``), the upstream of the Kafka
    proxy: it advertises ``kafka_proxy_port``, so a client bootstrapped there stays behind it."""
    toxiproxy_port: int = Field(18474, ge=1024, le=65535)
    """The HTTP API of the local toxiproxy (``segflow stack up --proxy``) on loopback."""
    kafka_proxy_port: int = Field(19097, ge=1024, le=65535)
    """Where toxiproxy's ``kafka`` proxy listens (upstream: ``kafka_proxied_port``)."""
    redis_proxy_port: int = Field(16381, ge=1024, le=65535)
    """Where toxiproxy's ``redis`` proxy listens (upstream: ``redis_port``)."""

    # Connections
    kafka_bootstrap: str = "127.0.0.1:19092"
    redis_url: str = "redis://127.0.0.1:16379/0"
    """``rediss://`` for TLS; ``redis://user:password@host:port/0`` credentials win over the
    ``redis_username``/``redis_password`` settings."""

    # Security (README "Security"): every secret is a SecretStr (printed as ********) that can
    # also be read from a file (SEGFLOW_<NAME>_FILE; one of the two, not both).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    kafka_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    """CA certificates that sign the brokers' certificates (None: the system's CAs)."""
    kafka_ssl_certfile: Path | None = None
    """Client certificate for mutual TLS (optional), with ``kafka_ssl_keyfile``."""
    kafka_ssl_keyfile: Path | None = None
    redis_username: str = ""
    """An ACL user (empty: ``default``, or the user in the URL)."""
    redis_password: SecretStr = SecretStr("")
    redis_password_file: Path | None = None
    redis_ssl_cafile: Path | None = None
    """CA certificates that sign the Redis server's certificate (``rediss://`` URLs)."""
    redis_socket_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    """A Redis reply not come after this long is a timeout (the connection is closed and the
    batch retried): never a wait forever on a server or connection that stopped answering."""
    redis_connect_timeout_seconds: float = Field(5.0, gt=0, le=600)
    """How long to wait for a new Redis connection."""
    redis_health_check_seconds: float = Field(30.0, ge=0, le=3600)
    """A pooled Redis connection idle this long is PINGed before use (0: never)."""

    # Topics
    app_id: str = "segflow"
    events_topic: str = "segflow.events"
    events_partitions: int = Field(8, ge=1, le=1024)
    changes_topic: str = "segflow.segment-changes"
    changes_partitions: int = Field(8, ge=1, le=1024)
    dlq_topic: str = "segflow.events.dlq"

    # Worker
    batch_max_events: int = Field(500, ge=1, le=100_000)
    batch_within_seconds: float = Field(0.2, gt=0, le=60)
    session_timeout_seconds: float = Field(10.0, ge=1, le=300)
    heartbeat_interval_seconds: float = Field(1.0, gt=0, le=60)
    commit_interval_seconds: float = Field(1.0, gt=0, le=60)
    """At most how long delivered events stay uncommitted (a commit is at most once per batch)."""
    produce_linger_ms: int = Field(0, ge=0, le=1000)
    """How long the producer waits to fill a request with more change events. 0 by default: a
    batch's sends are all queued before the producer's sender runs, so they share one request
    per broker anyway, and the worker awaits their acks before its next batch (a linger of 5 ms
    was pure wait: bench --quick, 2 runs each, 2,912-3,365 vs 3,283-3,480 events/s, p50 45-60
    vs 22-25 ms at half load)."""
    fetch_partition_bytes: int = Field(4 << 20, ge=1 << 16, le=1 << 30)
    """The most one fetch reads of one partition: large fetches mean few requests to the broker."""
    web_enabled: bool = True
    web_port: int = Field(6066, ge=1024, le=65535)
    web_bind: str = "127.0.0.1"
    """The address the worker's and ``segflow deliver``'s web pages listen on: loopback unless
    something outside the host must reach them (a container: ``0.0.0.0``, for Prometheus and
    Kubernetes probes)."""
    web_token: SecretStr = SecretStr("")
    """When set, every page of the worker, ``segflow deliver`` and ``segflow dashboard`` except
    the probes (``engine.web_auth.PROBE_PATHS``) needs ``Authorization: Bearer <token>``."""
    web_token_file: Path | None = None
    log_level: str = "warn"
    log_customer_ids: Literal["plain", "hashed"] = "plain"
    """``hashed``: logs name a customer by a keyed hash (``engine.log_ids``), never the id."""
    log_hash_key: SecretStr = SecretStr("")
    """HMAC key of the hashed ids (empty: derived from the checkpoint key, so the processes of one
    deployment agree)."""
    log_hash_key_file: Path | None = None

    # Feature store
    key_prefix: str = "sf"
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    allowed_lateness_days: float = Field(3.0, ge=0)
    engagement_half_life_days: float = Field(14.0, gt=0)
    key_features: str = "payments,budgeting,alerts,card_controls"
    products: str = "mortgage,credit_card,savings,current_account,insurance"
    customer_ttl_days: float = Field(0.0, ge=0)
    record_cache_size: int = Field(100_000, ge=0)

    # Models
    model_kind: str = Field("linear", pattern=r"^(linear|tree|forest)$")
    churn_days: float = Field(30.0, gt=0)
    clv_days: float = Field(90.0, gt=0)  # horizon of the CLV model and of the BTYD scores (rule_scores)
    propensity_days: float = Field(30.0, gt=0)
    prediction_interval_days: float = Field(7.0, ge=0)
    holdout_fraction: float = Field(0.1, ge=0, lt=1)
    drift_response: str = Field("alert", pattern=r"^(alert|reset)$")
    protected_attributes: str = ""
    group_attribute: str = "region"  # event attribute whose latest value groups the fairness report
    checkpoint_key: str = ""  # HMAC key of model checkpoints; empty: a random key kept in stack_dir
    model_btyd_inputs: bool = False
    """The models also read the customer's BTYD quantities (``engine.stream.lifetime_inputs``);
    scoring then waits for the population snapshot of its day, as RFM rules do. Off until its
    effect on ``segflow evaluate`` and the CDNOW check is measured."""
    rescore_days: float = Field(7.0, gt=0)  # a silent customer is re-scored this often (event time)
    external_scores: str = ""
    """Comma-separated names of external batch models (``score`` events) the rules may read as
    ``score_<name>``; a score event of any valid name is stored, but a rule may only name these."""

    # Model readiness (models.readiness): a model that is not ready scores None to the rules
    model_ready_min_labels: int = Field(200, ge=0)
    """Labels a model must have learned before its score reaches the rules (a model with none is
    never ready). 200 is about four labels per model input (~50 inputs): below that River's SGD
    weights still swing with each label; the AUC test below is the guard on quality."""
    model_ready_require_auc: bool = True
    """A classifier is also warming up until its holdout AUC interval lies above 0.5."""
    model_ready_auc_z: float = Field(1.96, gt=0)
    """z of the holdout AUC interval (Hanley & McNeil standard error); 1.96: 95%."""
    model_ready_min_holdout_per_class: int = Field(10, ge=1)
    """Positive and negative holdout labels each needed before the AUC interval is trusted (the
    normal approximation gives a zero-width interval for one positive ranked first)."""

    # Learner: one model per kind for the whole population (engine/learner)
    model_period_seconds: float = Field(86_400.0, ge=1)
    """Event-time length of a sealed model snapshot period (the learner publishes one model
    snapshot per period). In a replay every sealed period costs one worker->learner round trip
    (workers publish their label frontiers, wait for the seal, load the snapshot), so a period of
    a day keeps that to one per replayed day."""
    learner_lease_seconds: float = Field(10.0, gt=0, le=300)
    """How long an active learner's lease lasts unrenewed; a standby takes over after it."""
    learner_embedded: bool = True
    """Every worker also stands by as the learner (one holds the lease and learns); set false to
    run ``segflow learner`` processes instead (needed with Redis Cluster: the learner needs a
    single Redis server)."""

    # Rules and event time
    rules_file: Path | None = None  # None: the shipped engine/rules/default_rules.yaml
    rules_reload_seconds: float = Field(5.0, ge=0)  # 0: never reload
    idle_advance_seconds: float = Field(30.0, gt=0)

    # Delivery (segflow deliver): the actions topic to webhooks, SMTP and CRMs
    destinations_file: Path | None = None
    """The destinations YAML (channel -> webhook or SMTP destination); ``segflow deliver`` needs it.
    See deploy/examples/destinations.yaml."""
    deliver_retry_base_seconds: float = Field(0.5, gt=0, le=3600)
    """Backoff before the first retry of a failed delivery attempt (before jitter)."""
    deliver_retry_factor: float = Field(2.0, ge=1, le=10)
    """Each further retry waits this many times longer than the one before (up to the cap)."""
    deliver_retry_cap_seconds: float = Field(60.0, gt=0, le=86_400)
    """The longest backoff between two attempts (before jitter)."""
    deliver_max_attempts: int = Field(8, ge=1, le=1000)
    """Attempts (the first included) before an action is dead-lettered."""
    deliver_retry_after_max_seconds: float = Field(600.0, ge=0, le=86_400)
    """A receiver's ``Retry-After`` is honoured up to this long."""
    deliver_max_in_flight: int = Field(1000, ge=1, le=1_000_000)
    """Actions read but not yet finished (delivered, dead-lettered); at this many the consumer
    pauses its partitions until some finish."""
    deliver_log_interval_seconds: float = Field(30.0, gt=0, le=86_400)
    """How often ``segflow deliver`` logs its counters."""
    deliver_web_port: int = Field(6067, ge=0, le=65535)
    """``segflow deliver``'s metrics and health pages on ``web_bind`` (0: none)."""

    @property
    def labels_topic(self) -> str:
        """The topic of resolved labels, workers to learner: ``<app_id>.labels`` (1 partition)."""
        return f"{self.app_id}.labels"

    @property
    def actions_topic(self) -> str:
        """Action decisions, sent or withheld (``engine.activation.actions``): ``<app_id>.actions``."""
        return f"{self.app_id}.actions"

    @property
    def actions_dlq_topic(self) -> str:
        """Actions that no destination accepted after every retry: ``<app_id>.actions.dlq``."""
        return f"{self.app_id}.actions.dlq"

    @property
    def outcomes_topic(self) -> str:
        """One outcome per measured decision (``engine.activation.outcomes``): ``<app_id>.outcomes``."""
        return f"{self.app_id}.outcomes"

    @property
    def kafka_secret(self) -> str:
        """The Kafka password, from ``kafka_password`` or ``kafka_password_file``."""
        return _secret(self.kafka_password, self.kafka_password_file)

    @property
    def redis_secret(self) -> str:
        """The Redis password, from ``redis_password`` or ``redis_password_file`` ("" for none)."""
        return _secret(self.redis_password, self.redis_password_file)

    @property
    def web_secret(self) -> str:
        """The pages' bearer token, from ``web_token`` or ``web_token_file`` ("": open pages)."""
        return _secret(self.web_token, self.web_token_file)

    @property
    def log_hash_secret(self) -> str:
        """The key of hashed customer ids in logs ("": derive it from the checkpoint key)."""
        return _secret(self.log_hash_key, self.log_hash_key_file)

    @field_validator(
        "kafka_password_file",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "redis_password_file",
        "redis_ssl_cafile",
        "web_token_file",
        "log_hash_key_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _security(self) -> Settings:
        for name in SECRET_SETTINGS:
            password: SecretStr = getattr(self, name)
            file: Path | None = getattr(self, f"{name}_file")
            if file is not None:
                if password.get_secret_value():
                    raise ValueError(f"set SEGFLOW_{name.upper()} or its _FILE, not both")
                _secret(password, file)  # unreadable: a one-line error now, not at the first connect
        if 0 < len(self.web_secret) < MIN_WEB_TOKEN_CHARS:
            raise ValueError(
                f"SEGFLOW_WEB_TOKEN (or its _FILE) is shorter than {MIN_WEB_TOKEN_CHARS} characters; "
                "make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"
            )
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_username and self.kafka_secret
        ):
            raise ValueError(
                f"SEGFLOW_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "SEGFLOW_KAFKA_USERNAME and SEGFLOW_KAFKA_PASSWORD (or SEGFLOW_KAFKA_PASSWORD_FILE)"
            )
        return self

    @field_validator("external_scores")
    @classmethod
    def _external_names(cls, value: str) -> str:
        for name in split_list(value):
            problem = external_model_problem(name)
            if problem is not None:
                raise ValueError(f"external score {name!r} {problem}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        allowed = {"crit", "error", "warn", "info", "debug"}
        value = value.lower()
        if value not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}")
        return value


SECRET_SETTINGS = ("kafka_password", "redis_password", "web_token", "log_hash_key")
"""Every secret setting ``<name>``, each with its ``<name>_file`` alternative."""
MIN_WEB_TOKEN_CHARS = 16
"""A shorter page token is refused: guessable tokens only look like protection."""


def namespaced(settings: Settings, name: str, key_prefix: str) -> Settings:
    """``settings`` with its own consumer group, topics and Redis key prefix (demo, bench, tests)."""
    return settings.model_copy(
        update={
            "app_id": name,
            "events_topic": f"{name}.events",
            "changes_topic": f"{name}.segment-changes",
            "dlq_topic": f"{name}.dlq",
            "key_prefix": key_prefix,
        }
    )


def _secret(value: SecretStr, file: Path | None) -> str:
    if file is None:
        return value.get_secret_value()
    try:
        return file.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {file}: {exc.strerror or exc}") from None


def split_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting as a tuple of non-empty names."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


class SettingsError(Exception):
    """Configuration is invalid; the message is one line meant for a person."""


PROFILE_VARIABLE = "SEGFLOW_PROFILE"
LOCAL_PROFILE = ".segflow.env"
NO_PROFILE = "none"
"""The value of ``SEGFLOW_PROFILE`` that reads no profile at all (child processes, tests)."""


def profile_path(explicit: Path | None = None) -> Path | None:
    """The profile in force: ``explicit``, else ``$SEGFLOW_PROFILE``, else ``./.segflow.env``."""
    if explicit is not None:
        return explicit
    named = os.environ.get(PROFILE_VARIABLE)
    if named is not None:
        return None if named.strip().lower() in ("", NO_PROFILE) else Path(named)
    local = Path.cwd() / LOCAL_PROFILE
    return local if local.is_file() else None


def load_settings(profile: Path | None = None, *, read_profile: bool = True, **overrides: object) -> Settings:
    """Read settings from the environment, the profile in force (see :func:`profile_path`; none
    when not ``read_profile``) and ``overrides``, with a one-line error on failure."""
    path = profile_path(profile) if read_profile else None
    if path is not None and not path.is_file():
        raise SettingsError(f"profile {path} not found (set {PROFILE_VARIABLE}={NO_PROFILE} for none)")
    try:
        return Settings(_env_file=path, **overrides)  # type: ignore[arg-type,call-arg]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if not field:  # a check across settings (the security ones)
            raise SettingsError(f"invalid settings: {message}") from None
        raise SettingsError(f"invalid setting SEGFLOW_{field.upper()}: {message}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return load_settings()
