"""Checkpoints: encrypted round trip, every corruption refused clearly, retention of last 5 + hourly."""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

import boto3
import pytest

from tdev import container
from tdev.sessions.checkpoints import (
    SCHEMA_VERSION,
    CheckpointCorruptError,
    CheckpointKind,
    CheckpointStore,
    _context,
)
from tdev_cli.runtime import CHECKPOINT_BUCKET, TABLE_NAME

STATE = {"memory": {"working": [{"item_id": "a", "content": "x" * 500}]}, "context": [], "turns": 7}


@pytest.fixture
def store(runtime: Any) -> CheckpointStore:
    return CheckpointStore(CHECKPOINT_BUCKET, TABLE_NAME, container.cipher())


def _object(meta: Any) -> bytes:
    return bytes(boto3.client("s3").get_object(Bucket=CHECKPOINT_BUCKET, Key=meta.s3_key)["Body"].read())


def test_round_trip_is_compressed_encrypted_and_described(store: CheckpointStore) -> None:
    meta = store.save("ses-1", STATE, CheckpointKind.MANUAL)
    stored = _object(meta)
    assert stored.startswith(b"TDE1") and b"xxxx" not in stored  # encrypted, not plain
    assert meta.size == len(stored) < 500  # compressed: 500 x's do not cost 500 bytes
    assert meta.sha256 == hashlib.sha256(stored).hexdigest()
    assert store.load(meta) == STATE
    [listed] = store.list_for("ses-1")
    assert listed == meta and listed.kind is CheckpointKind.MANUAL and listed.schema_version == SCHEMA_VERSION
    item = (
        boto3.resource("dynamodb")
        .Table(TABLE_NAME)
        .get_item(
            Key={"PK": "SESSION#ses-1", "SK": f"CHECKPOINT#{meta.created_ms:013d}#{meta.checkpoint_id}"}
        )["Item"]
    )
    assert int(item["expires_at"]) == meta.created_ms // 1000 + 7 * 86_400


def _replace_object(meta: Any, body: bytes) -> None:
    boto3.client("s3").put_object(Bucket=CHECKPOINT_BUCKET, Key=meta.s3_key, Body=body)


def _rewrite_metadata(meta: Any, body: bytes) -> Any:
    """Make the table agree with a replaced object, so the later checks (not the checksum) must catch it."""
    from dataclasses import replace

    _replace_object(meta, body)
    return replace(meta, sha256=hashlib.sha256(body).hexdigest(), size=len(body))


def test_flipped_byte_fails_the_checksum(store: CheckpointStore) -> None:
    meta = store.save("ses-1", STATE, CheckpointKind.AUTO)
    body = bytearray(_object(meta))
    body[-5] ^= 0x01
    _replace_object(meta, bytes(body))
    with pytest.raises(CheckpointCorruptError, match="checksum mismatch"):
        store.load(meta)


def test_tampered_ciphertext_with_matching_checksum_fails_decryption(store: CheckpointStore) -> None:
    meta = store.save("ses-1", STATE, CheckpointKind.AUTO)
    body = bytearray(_object(meta))
    body[-5] ^= 0x01
    with pytest.raises(CheckpointCorruptError, match="decryption failed"):
        store.load(_rewrite_metadata(meta, bytes(body)))


def test_a_checkpoint_moved_to_another_session_does_not_decrypt(store: CheckpointStore) -> None:
    from dataclasses import replace

    meta = store.save("ses-1", STATE, CheckpointKind.AUTO)
    with pytest.raises(CheckpointCorruptError, match="decryption failed"):
        store.load(replace(meta, session_id="ses-2"))


def test_unknown_schema_version_is_refused(store: CheckpointStore) -> None:
    meta = store.save("ses-1", STATE, CheckpointKind.AUTO)
    document = {"schema_version": 99, "session_id": "ses-1", "state": STATE}
    body = store.cipher.encrypt(
        zlib.compress(json.dumps(document).encode()), _context("ses-1", meta.checkpoint_id)
    )
    with pytest.raises(CheckpointCorruptError, match="schema version 99 is not the supported 1"):
        store.load(_rewrite_metadata(meta, body))


def test_missing_object_is_refused(store: CheckpointStore) -> None:
    meta = store.save("ses-1", STATE, CheckpointKind.AUTO)
    boto3.client("s3").delete_object(Bucket=CHECKPOINT_BUCKET, Key=meta.s3_key)
    with pytest.raises(CheckpointCorruptError, match="cannot be read"):
        store.load(meta)


def test_latest_valid_skips_corrupt_newer_checkpoints(store: CheckpointStore) -> None:
    good = store.save("ses-1", {"n": 1}, CheckpointKind.AUTO, now_ms=1_000_000)
    bad = store.save("ses-1", {"n": 2}, CheckpointKind.AUTO, now_ms=2_000_000)
    _replace_object(bad, b"garbage")
    meta, state, skipped = store.latest_valid("ses-1")
    assert meta.checkpoint_id == good.checkpoint_id and state == {"n": 1}
    assert len(skipped) == 1 and bad.checkpoint_id in skipped[0]
    _replace_object(good, b"garbage too")
    with pytest.raises(CheckpointCorruptError, match=r"no valid checkpoint among 2: .*checksum mismatch"):
        store.latest_valid("ses-1")


def test_retention_keeps_the_last_five_and_one_per_hour(store: CheckpointStore) -> None:
    hour = 3_600_000
    base = 1_790_000_000_000 - (1_790_000_000_000 % hour)
    # Hours 0..2 with four checkpoints each (every 5 minutes), then hour 3 with six.
    times = [base + h * hour + m * 300_000 for h in range(3) for m in range(4)]
    times += [base + 3 * hour + m * 300_000 for m in range(6)]
    saved = [store.save("ses-r", {"t": t}, CheckpointKind.AUTO, now_ms=t) for t in times]
    kept = store.list_for("ses-r")
    kept_times = sorted(c.created_ms for c in kept)
    newest_five = sorted(times)[-5:]
    newest_per_hour = [max(t for t in times if t // hour == h) for h in sorted({t // hour for t in times})]
    assert kept_times == sorted(set(newest_five) | set(newest_per_hour))
    assert len(kept) == 5 + 3
    keys = {
        o["Key"]
        for o in boto3.client("s3")
        .list_objects_v2(Bucket=CHECKPOINT_BUCKET, Prefix="sessions/ses-r/")
        .get("Contents", [])
    }
    assert keys == {c.s3_key for c in kept}
    assert len(saved) - len(kept) == 10
