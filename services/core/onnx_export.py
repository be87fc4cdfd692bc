"""A sentence-transformers model folder exported once to ONNX, so that a query service runs the same fp32
model with onnxruntime and never imports torch (torch and transformers cost ~770 MiB of resident memory).

The export runs in a child process (`python -m services.core.onnx_export FOLDER TARGET`), the only one that
imports torch. It exports the transformer (its last hidden state); pooling and normalisation stay in
`OnnxEmbedder`, which does what the folder's modules.json asks only when that is mean pooling then L2
normalisation (anything else is refused and runs on torch). Before the file is published the child compares
onnxruntime's vectors with sentence-transformers' own on probe texts, so a cached export is one that matched:
the model id stays the folder's, and vectors from either runtime share one index.

Exports are cached under `EmbeddingSettings.cache_dir`, one folder per model folder content digest.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Bump when the exported graph or its metadata changes meaning: older exports are then made again.
EXPORT_FORMAT = 1
MIN_COSINE = 0.9999
PROBES = (
    "The Dark Knight Rises",
    "a film about space travel, black holes and time dilation",
    "godfater",
    "Amélie",
    "x",
    "the history of the world in one very long sentence " * 40,  # past the token limit: truncation must agree
)
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(Exception):
    pass


@dataclass(frozen=True)
class ExportedModel:
    onnx: Path
    tokenizer: Path
    max_tokens: int


def unsupported(folder: Path) -> str | None:
    """Why this folder cannot run as an ONNX export with mean pooling and normalisation, or None."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return "no readable modules.json (not a sentence-transformers folder)"
    kinds = [m.get("type") for m in modules]
    if kinds not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        return f"modules {kinds}: only a transformer, mean pooling and normalisation are exported"
    pooling_dir = next(m for m in modules if m.get("type") == _POOLING).get("path", "")
    try:
        pooling = json.loads((folder / pooling_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "no readable pooling config"
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        return f"pooling {modes}: only mean pooling is exported"
    if not (folder / "tokenizer.json").exists():
        return "no tokenizer.json"
    return None


def folder_digest(folder: Path) -> str:
    """A digest of every file's relative path and content: another model, or a changed one, is exported anew."""
    digest = hashlib.sha256(f"format {EXPORT_FORMAT}\n".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(folder).as_posix()}\n".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read(target: Path, folder: Path) -> ExportedModel | None:
    try:
        meta = json.loads((target / "export.json").read_text())
    except (OSError, ValueError):
        return None
    onnx = target / "model.onnx"
    return ExportedModel(onnx, folder / "tokenizer.json", int(meta["max_tokens"])) if onnx.exists() else None


def ensure_export(folder: Path, cache_dir: Path, *, name: str = "", timeout_s: float = 600.0) -> ExportedModel:
    """The cached export of `folder`, made first (in a child process that may import torch) when missing.
    `name` (e.g. the model id) only makes the cache folder recognisable. Raises ExportError when the folder
    cannot be exported or the export did not match the model."""
    why = unsupported(folder)
    if why:
        raise ExportError(f"{folder}: {why}")
    label = re.sub(r"[^\w.-]+", "_", name or folder.resolve().name)
    target = cache_dir / f"{label}-{folder_digest(folder)[:20]}"
    found = _read(target, folder)
    if found is not None:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One exporter per model at a time (an API and a benchmark may start together); the others then read it.
    with open(cache_dir / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _read(target, folder)
        if found is not None:
            return found
        staging = cache_dir / f".{target.name}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "services.core.onnx_export", str(folder), str(staging)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                raise ExportError(f"exporting {folder} to ONNX failed: {' | '.join(tail)}")
            os.replace(staging, target)  # appears whole or not at all
        except subprocess.TimeoutExpired as exc:
            raise ExportError(f"exporting {folder} to ONNX took over {timeout_s:g} s") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    exported = _read(target, folder)
    if exported is None:
        raise ExportError(f"the export of {folder} is incomplete in {target}")
    return exported


def mean_pooled(hidden: npt.NDArray[Any], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """Mean over the tokens the mask keeps, then L2 normalisation: sentence-transformers' Pooling(mean) and
    Normalize modules."""
    pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(pooled / norms, dtype=np.float32)


def encode(
    session: Any, tokenizer: Any, texts: Sequence[str], inputs: set[str] | frozenset[str]
) -> npt.NDArray[np.float32]:
    """One batch through an onnxruntime session of an exported transformer, pooled and normalised."""
    encoded = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in inputs:
        feed["token_type_ids"] = np.zeros_like(ids)
    return mean_pooled(session.run(None, feed)[0], mask)


def export(folder: Path, target: Path) -> float:
    """Export and check (this process imports torch); returns the lowest cosine to sentence-transformers."""
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    why = unsupported(folder)
    if why:
        raise ExportError(why)
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    first: Any = model[0]
    transformer = first.auto_model.eval()
    if model.max_seq_length is None:
        raise ExportError("the model declares no max_seq_length: its truncation could not be matched")
    max_tokens = int(model.max_seq_length)

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    target.mkdir(parents=True, exist_ok=True)
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(),
            (sample, sample, torch.zeros_like(sample)),
            str(target / "model.onnx"),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, and a graph onnxruntime runs as is
        )

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding()
    session = onnxruntime.InferenceSession(str(target / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = frozenset(i.name for i in session.get_inputs())
    ours = np.vstack(
        [encode(session, tokenizer, PROBES, inputs), *(encode(session, tokenizer, [t], inputs) for t in PROBES)]
    )
    theirs = model.encode([*PROBES, *PROBES], normalize_embeddings=True, convert_to_numpy=True)
    lowest = float((ours * theirs).sum(axis=1).min())
    if lowest < MIN_COSINE:
        raise ExportError(f"ONNX vectors differ from sentence-transformers' (lowest cosine {lowest:.6f})")
    meta = {"format": EXPORT_FORMAT, "max_tokens": max_tokens, "lowest_cosine": lowest, "torch": torch.__version__}
    (target / "export.json").write_text(json.dumps(meta, indent=2))
    return lowest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a sentence-transformers folder to ONNX and check it.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    try:
        lowest = export(args.folder, args.target)
    except ExportError as exc:
        print(f"export refused: {exc}", file=sys.stderr)
        return 1
    print(f"exported {args.folder} to {args.target} (lowest cosine to sentence-transformers: {lowest:.6f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
