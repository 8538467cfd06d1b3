"""Encrypted session checkpoints: JSON -> zlib -> AES-256-GCM (KMS data key) -> S3, metadata in the table.

    S3:    sessions/<session>/checkpoints/<created_ms>-<checkpoint>.tdc  (the envelope: the encrypted
           data key travels inside it, see tdev.crypto)
    table: PK = SESSION#<session>  SK = CHECKPOINT#<created_ms>#<checkpoint>
           {kind, schema_version, size, sha256, s3_key, expires_at}

The encryption context binds an envelope to its session and checkpoint id, so a checkpoint copied
under another session or id does not decrypt. Restore checks, in order: the object exists, its SHA-256
matches the metadata, it decrypts (GCM tag), it decompresses, it parses, and its schema version is
one this code reads; any failure is a CheckpointCorruptError naming the check that failed.

Retention: the newest 5 plus the newest of every hour are kept; the rest are deleted as new ones are
written. Everything expires after 7 days anyway (S3 lifecycle rule on the prefix + the item's TTL).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key

from tdev import aws
from tdev.crypto import DecryptionError, EnvelopeCipher
from tdev.errors import NotFoundError, TDevError

SCHEMA_VERSION = 1
RETENTION_SECONDS = 7 * 86_400
KEEP_LATEST = 5


class CheckpointKind(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"
    RECOVERY = "recovery"


class CheckpointCorruptError(TDevError):
    status_code = 422
    code = "CheckpointCorrupt"


@dataclass(frozen=True)
class CheckpointMeta:
    session_id: str
    checkpoint_id: str
    created_ms: int
    kind: CheckpointKind
    schema_version: int
    size: int
    sha256: str
    s3_key: str

    def view(self) -> dict[str, Any]:
        return {
            "checkpoint_id": self.checkpoint_id,
            "created_at": self.created_ms / 1000,
            "kind": str(self.kind),
            "schema_version": self.schema_version,
            "size": self.size,
            "sha256": self.sha256,
        }


def _context(session_id: str, checkpoint_id: str) -> dict[str, str]:
    return {"purpose": "session-checkpoint", "session_id": session_id, "checkpoint_id": checkpoint_id}


class CheckpointStore:
    def __init__(
        self, bucket: str, table_name: str, cipher: EnvelopeCipher, *, keep_latest: int = KEEP_LATEST
    ) -> None:
        self.bucket, self.table_name, self.cipher, self.keep_latest = bucket, table_name, cipher, keep_latest

    @property
    def table(self) -> Any:
        return aws.table(self.table_name)

    @property
    def s3(self) -> Any:
        return aws.client("s3")

    def save(
        self, session_id: str, state: dict[str, Any], kind: CheckpointKind, *, now_ms: int | None = None
    ) -> CheckpointMeta:
        created_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        checkpoint_id = f"ckp-{uuid.uuid4().hex[:16]}"
        document = {"schema_version": SCHEMA_VERSION, "session_id": session_id, "state": state}
        compressed = zlib.compress(json.dumps(document, separators=(",", ":"), default=str).encode(), 6)
        envelope = self.cipher.encrypt(compressed, _context(session_id, checkpoint_id))
        meta = CheckpointMeta(
            session_id=session_id,
            checkpoint_id=checkpoint_id,
            created_ms=created_ms,
            kind=kind,
            schema_version=SCHEMA_VERSION,
            size=len(envelope),
            sha256=hashlib.sha256(envelope).hexdigest(),
            s3_key=f"sessions/{session_id}/checkpoints/{created_ms:013d}-{checkpoint_id}.tdc",
        )
        self.s3.put_object(
            Bucket=self.bucket,
            Key=meta.s3_key,
            Body=envelope,
            ContentType="application/octet-stream",
            Metadata={"sha256": meta.sha256, "schema-version": str(SCHEMA_VERSION), "kind": str(kind)},
        )
        self.table.put_item(
            Item={
                "PK": f"SESSION#{session_id}",
                "SK": f"CHECKPOINT#{created_ms:013d}#{checkpoint_id}",
                "entity": "Checkpoint",
                "checkpoint_id": checkpoint_id,
                "created_ms": created_ms,
                "kind": str(kind),
                "schema_version": SCHEMA_VERSION,
                "size": meta.size,
                "sha256": meta.sha256,
                "s3_key": meta.s3_key,
                "expires_at": created_ms // 1000 + RETENTION_SECONDS,
            },
            ConditionExpression="attribute_not_exists(PK)",
        )
        self.apply_retention(session_id)
        return meta

    def list_for(self, session_id: str) -> list[CheckpointMeta]:
        """Newest first."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(f"SESSION#{session_id}")
            & Key("SK").begins_with("CHECKPOINT#"),
            "ScanIndexForward": False,
        }
        while True:
            response = self.table.query(**kwargs)
            items += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return [
            CheckpointMeta(
                session_id=session_id,
                checkpoint_id=str(i["checkpoint_id"]),
                created_ms=int(i["created_ms"]),
                kind=CheckpointKind(i["kind"]),
                schema_version=int(i["schema_version"]),
                size=int(i["size"]),
                sha256=str(i["sha256"]),
                s3_key=str(i["s3_key"]),
            )
            for i in items
        ]

    def latest_id(self, session_id: str) -> str | None:
        """The newest checkpoint's id (one small query), to tell whether a cached workspace is current."""
        response = self.table.query(
            KeyConditionExpression=Key("PK").eq(f"SESSION#{session_id}")
            & Key("SK").begins_with("CHECKPOINT#"),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="checkpoint_id",
        )
        items = response.get("Items", [])
        return str(items[0]["checkpoint_id"]) if items else None

    def retained(self, checkpoints: list[CheckpointMeta]) -> set[str]:
        """Ids to keep from a newest-first list: the newest `keep_latest` and the newest of each hour."""
        keep = {c.checkpoint_id for c in checkpoints[: self.keep_latest]}
        hours: set[int] = set()
        for checkpoint in checkpoints:
            hour = checkpoint.created_ms // 3_600_000
            if hour not in hours:
                hours.add(hour)
                keep.add(checkpoint.checkpoint_id)
        return keep

    def apply_retention(self, session_id: str) -> list[str]:
        checkpoints = self.list_for(session_id)
        keep = self.retained(checkpoints)
        deleted = []
        for checkpoint in checkpoints:
            if checkpoint.checkpoint_id in keep:
                continue
            self.s3.delete_object(Bucket=self.bucket, Key=checkpoint.s3_key)
            self.table.delete_item(
                Key={
                    "PK": f"SESSION#{session_id}",
                    "SK": f"CHECKPOINT#{checkpoint.created_ms:013d}#{checkpoint.checkpoint_id}",
                }
            )
            deleted.append(checkpoint.checkpoint_id)
        return deleted

    def load(self, meta: CheckpointMeta) -> dict[str, Any]:
        """The checkpoint's state, after validating it; CheckpointCorruptError says which check failed."""

        def corrupt(check: str) -> CheckpointCorruptError:
            return CheckpointCorruptError(
                f"checkpoint {meta.checkpoint_id} of session {meta.session_id} is unusable: {check}",
                field="checkpoint_id",
            )

        try:
            envelope = self.s3.get_object(Bucket=self.bucket, Key=meta.s3_key)["Body"].read()
        except Exception as exc:  # NoSuchKey, access denied
            raise corrupt(f"its object cannot be read ({type(exc).__name__})") from exc
        if hashlib.sha256(envelope).hexdigest() != meta.sha256 or len(envelope) != meta.size:
            raise corrupt("checksum mismatch (the stored object is not the one written)")
        try:
            compressed = self.cipher.decrypt(envelope, _context(meta.session_id, meta.checkpoint_id))
        except DecryptionError as exc:
            raise corrupt(f"decryption failed: {exc.message}") from exc
        try:
            document = json.loads(zlib.decompress(compressed))
        except (zlib.error, ValueError) as exc:
            raise corrupt(f"not compressed JSON ({type(exc).__name__})") from exc
        if not isinstance(document, dict) or document.get("schema_version") != SCHEMA_VERSION:
            raise corrupt(
                f"schema version {document.get('schema_version') if isinstance(document, dict) else '?'} "
                f"is not the supported {SCHEMA_VERSION}"
            )
        if document.get("session_id") != meta.session_id:
            raise corrupt("it belongs to another session")
        state = document.get("state")
        if not isinstance(state, dict):
            raise corrupt("it holds no state object")
        return state

    def get(self, session_id: str, checkpoint_id: str) -> CheckpointMeta:
        for checkpoint in self.list_for(session_id):
            if checkpoint.checkpoint_id == checkpoint_id:
                return checkpoint
        raise NotFoundError(f"session {session_id} has no checkpoint {checkpoint_id}", field="checkpoint_id")

    def latest_valid(self, session_id: str) -> tuple[CheckpointMeta, dict[str, Any], list[str]]:
        """The newest checkpoint that validates, its state, and why newer ones were skipped.

        NotFoundError when the session has no checkpoint; CheckpointCorruptError (with every reason)
        when none of them validates.
        """
        skipped: list[str] = []
        checkpoints = self.list_for(session_id)
        if not checkpoints:
            raise NotFoundError(f"session {session_id} has no checkpoint", field="session_id")
        for checkpoint in checkpoints:
            try:
                return checkpoint, self.load(checkpoint), skipped
            except CheckpointCorruptError as exc:
                skipped.append(exc.message)
        raise CheckpointCorruptError(
            f"no valid checkpoint among {len(checkpoints)}: " + "; ".join(skipped), field="session_id"
        )
