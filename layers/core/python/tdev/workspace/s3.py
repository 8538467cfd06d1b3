"""A workspace under `workspaces/<execution-id>/` in the workspace bucket, encrypted with the CMK.

Sizes and hashes come from the object listing's metadata (`sha256` stored on write), so listing the
project never downloads it.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tdev import aws
from tdev.workspace.base import FileInfo, Workspace, digest

PREFIX = "workspaces/"


class S3Workspace(Workspace):
    def __init__(self, bucket: str, execution_id: str, *, kms_key_id: str | None = None) -> None:
        self.bucket, self.execution_id, self.kms_key_id = bucket, execution_id, kms_key_id
        self.prefix = f"{PREFIX}{execution_id}/"

    def _get(self, path: str) -> bytes | None:
        try:
            body = aws.client("s3").get_object(Bucket=self.bucket, Key=self.prefix + path)["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
                return None
            raise
        return bytes(body.read())

    def _put(self, path: str, content: bytes) -> None:
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        aws.client("s3").put_object(
            Bucket=self.bucket,
            Key=self.prefix + path,
            Body=content,
            Metadata={"sha256": digest(content)},
            **extra,
        )

    def _delete(self, path: str) -> None:
        aws.client("s3").delete_object(Bucket=self.bucket, Key=self.prefix + path)

    def sizes(self) -> dict[str, int]:
        """From the listing alone: a write checks the limits without a HEAD per file."""
        found: dict[str, int] = {}
        for page in (
            aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        ):
            for obj in page.get("Contents", []):
                found[obj["Key"][len(self.prefix) :]] = int(obj["Size"])
        return found

    def files(self) -> list[FileInfo]:
        s3 = aws.client("s3")
        found: list[FileInfo] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                path = obj["Key"][len(self.prefix) :]
                head = s3.head_object(Bucket=self.bucket, Key=obj["Key"])
                sha = head.get("Metadata", {}).get("sha256") or digest(self._get(path) or b"")
                found.append(FileInfo(path, int(obj["Size"]), sha))
        return sorted(found, key=lambda f: f.path)

    def presigned_url(self, path: str, expires_seconds: int = 300) -> str:
        return str(
            aws.client("s3").generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.prefix + path},
                ExpiresIn=expires_seconds,
            )
        )
