"""Settings: the one reader of the environment (every `ERRAND_*` variable)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmailTransport(StrEnum):
    SIMULATED = "simulated"
    SMTP = "smtp"


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


class Durability(StrEnum):
    """`normal` fsyncs the AOF every second; `strict` fsyncs every write (embedded Valkey)
    and, on a store with replicas, acknowledges an add only once a replica has it."""

    NORMAL = "normal"
    STRICT = "strict"


class AuthMode(StrEnum):
    """`keys`: public routes need a client's API key; `none`: every caller is `anonymous`."""

    KEYS = "keys"
    NONE = "none"


class WorkerEngine(StrEnum):
    """`bullmq` runs bullmq's Worker; `fast` runs errand's lean loop (engine/fastloop.py)."""

    BULLMQ = "bullmq"
    FAST = "fast"


TRACE_EXPORTERS = frozenset({"otlp", "console", "none"})


class Settings(BaseSettings):
    """Every knob errand has. Built once by the CLI or `create_app`, never at import."""

    model_config = SettingsConfigDict(env_prefix="ERRAND_", extra="ignore")

    # Where the data lives.
    redis_url: str | None = None
    redis_cluster: bool = False
    data_dir: Path = Path(".errand")
    queue_prefix: str = "{errand}"
    # Each queue is split into this many BullMQ queues, each under its own hash tag, so
    # a Redis Cluster spreads them over its masters (docs/scaling.md: why 16).
    partitions: int = Field(default=16, ge=1, le=1024)
    durability: Durability = Durability.NORMAL
    # `strict` on a store with replicas: how long an add waits for one replica to
    # acknowledge it (`WAIT 1 <ms>`) before the API answers 503. Keep it under
    # redis_timeout_s, which bounds every command.
    replica_wait_ms: int = Field(default=1000, ge=1, le=60_000)
    embedded_port: int = Field(default=0, ge=0, le=65535)
    # The embedded Valkey's memory cap (`maxmemory`, with `noeviction`): past it, writes
    # are refused (the API answers 503) instead of the machine killing the store. 0 = no cap.
    embedded_maxmemory: str = Field(default="1gb", pattern=r"(?i)^[0-9]+(b|k|kb|m|mb|g|gb)?$")
    redis_pool_size: int = Field(default=32, ge=2, le=10_000)
    # How long one Redis command may take before errand gives up on it: the API then
    # answers 503 and a job attempt fails, instead of hanging on a frozen server.
    redis_timeout_s: float = Field(default=2.0, gt=0, le=60)

    # Reports.
    report_seconds: float = Field(default=3.0, ge=0)
    result_ttl_seconds: int = Field(default=86400, ge=1)

    # Notifications.
    email_transport: EmailTransport = EmailTransport.SIMULATED
    email_send_ms: int = Field(default=500, ge=0)
    smtp_url: SecretStr | None = None
    smtp_from: str = "errand <no-reply@errand.local>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    notify_retries: int = Field(default=3, ge=0, le=100)
    notify_backoff_ms: int = Field(default=1000, ge=0)
    sent_ledger_ttl_seconds: int = Field(default=86400, ge=1)

    # Webhooks.
    webhook_secret: SecretStr | None = None
    webhook_secret_previous: SecretStr | None = None
    webhook_retries: int = Field(default=5, ge=0, le=100)
    webhook_backoff_ms: int = Field(default=1000, ge=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_allow_private: bool = False

    # Admin.
    admin_token: SecretStr | None = None

    # Clients and limits (per client; a client's own values, set at creation, win).
    auth: AuthMode = AuthMode.KEYS
    rate_limit_per_second: float = Field(default=100.0, ge=0, le=1_000_000)  # 0 = no limit
    rate_limit_burst: int = Field(default=200, ge=0, le=1_000_000)  # 0 = no limit
    notify_per_user_per_hour: int = Field(default=0, ge=0, le=1_000_000)  # 0 = no cap
    # Jobs waiting or scheduled in one queue beyond which a POST is refused (0 = no cap).
    max_queue_depth: int = Field(default=1_000_000, ge=0)

    # Workers.
    report_concurrency: int = Field(default=8, ge=1)
    notify_concurrency: int = Field(default=32, ge=1)
    webhook_concurrency: int = Field(default=32, ge=1)
    lock_duration_ms: int = Field(default=30000, ge=1000)
    stalled_interval_ms: int = Field(default=30000, ge=500)
    max_stalled_count: int = Field(default=5, ge=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # `errand worker` serves its own /metrics here when set (`errand up`: port + n per worker).
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    # The partitions this worker takes jobs from, e.g. "0-3,8" (empty: all of them), so
    # a deployment can pin workers to shards.
    worker_partitions: str = Field(default="", pattern=r"^\s*(\d+(-\d+)?(\s*,\s*\d+(-\d+)?)*)?\s*$")
    # `fast` passes the whole suite and drains ~2-3x faster than bullmq's Worker (see
    # docs/performance.md); `bullmq` stays one setting away.
    worker_engine: WorkerEngine = WorkerEngine.FAST

    # Retention.
    keep_completed_seconds: int = Field(default=86400, ge=1)
    keep_failed_seconds: int = Field(default=7 * 86400, ge=1)
    idempotency_ttl_seconds: int = Field(default=86400, ge=1)

    # HTTP.
    max_body_bytes: int = Field(default=65536, ge=1)
    # POST /notifications/batch takes bigger bodies than the other routes.
    max_batch_bytes: int = Field(default=1_048_576, ge=1)
    # GET /jobs examines at most this many index entries per page, so a selective
    # filter costs a bounded time (the page may then hold fewer than `limit` items).
    list_scan_budget: int = Field(default=500, ge=1)

    # Fault injection for crash tests: the chance that a worker SIGKILLs itself right
    # after an email went out and before BullMQ hears about it. Never set in production.
    fault_crash_after_send_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    # Logs.
    log_format: LogFormat = LogFormat.CONSOLE
    log_level: str = "INFO"

    # Traces: OpenTelemetry's standard variables (no ERRAND_ prefix) say whether errand
    # installs the SDK; the SDK and its exporter read the rest of OTEL_* themselves.
    otel_sdk_disabled: bool = Field(default=False, validation_alias="otel_sdk_disabled")
    otel_traces_exporter: str = Field(default="", validation_alias="otel_traces_exporter")
    otel_exporter_otlp_endpoint: str = Field(
        default="", validation_alias="otel_exporter_otlp_endpoint"
    )
    otel_exporter_otlp_traces_endpoint: str = Field(
        default="", validation_alias="otel_exporter_otlp_traces_endpoint"
    )
    otel_exporter_otlp_protocol: str = Field(
        default="", validation_alias="otel_exporter_otlp_protocol"
    )
    otel_exporter_otlp_traces_protocol: str = Field(
        default="", validation_alias="otel_exporter_otlp_traces_protocol"
    )
    otel_service_name: str = Field(default="errand", validation_alias="otel_service_name")

    @field_validator("redis_url", "worker_metrics_port", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def worker_partition_list(self) -> list[int]:
        """The partitions `worker_partitions` names (all of them when empty), sorted.

        Raises ValueError for a range past the last partition or one written backwards.
        """
        if not self.worker_partitions.strip():
            return list(range(self.partitions))
        chosen: set[int] = set()
        for part in self.worker_partitions.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if first > last or last >= self.partitions:
                raise ValueError(
                    f"worker partitions {part.strip()!r}: not within 0-{self.partitions - 1}"
                )
            chosen.update(range(first, last + 1))
        return sorted(chosen)

    @field_validator("otel_traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str) -> str:
        names = {n.strip().lower() for n in value.split(",") if n.strip()}
        if unknown := names - TRACE_EXPORTERS:
            known = ", ".join(sorted(TRACE_EXPORTERS))
            raise ValueError(f"OTEL_TRACES_EXPORTER: {', '.join(sorted(unknown))}? ({known})")
        return value

    @property
    def embedded(self) -> bool:
        """True when errand should start its own Valkey server."""
        return self.redis_url is None
