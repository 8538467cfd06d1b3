"""A workspace under `workspaces/<execution-id>/` in the workspace bucket, encrypted with the CMK.

Objects are written without encryption headers: the bucket's default encryption (SSE-KMS under the key the
stack grants the workspace functions, with a bucket key) applies to every put and copy. Naming a key here
would encrypt under whatever KMS_KEY_ID a function has (the field key), which the workspace grants do not
cover.

Sizes and hashes come from the object listing's metadata (`sha256` stored on write), so listing the
project never downloads it.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from tdev import aws
from tdev.workspace.base import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    FileInfo,
    Workspace,
    WorkspaceError,
    clean_path,
    digest,
)

PREFIX = "workspaces/"


class S3Workspace(Workspace):
    def __init__(self, bucket: str, execution_id: str) -> None:
        self.bucket, self.execution_id = bucket, execution_id
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
        aws.client("s3").put_object(
            Bucket=self.bucket,
            Key=self.prefix + path,
            Body=content,
            Metadata={"sha256": digest(content)},
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

    def copy_from(self, other: Workspace) -> list[str]:
        """A prefix copy inside the bucket (CopyObject: the bytes never leave S3), the limits checked from
        the two listings first; another store's files go through the rules one by one."""
        if not isinstance(other, S3Workspace) or other.bucket != self.bucket:
            return super().copy_from(other)
        incoming = other.sizes()
        merged = {**self.sizes(), **incoming}
        for path, size in incoming.items():
            clean_path(path)
            if size > MAX_FILE_BYTES:
                raise WorkspaceError(f"{path}: {size:,} bytes is over the file limit", field="path")
        if len(merged) > MAX_FILES or sum(merged.values()) > MAX_TOTAL_BYTES:
            raise WorkspaceError("the copied project is over the workspace's limits", field="path")
        s3 = aws.client("s3")
        for path in sorted(incoming):
            s3.copy_object(
                Bucket=self.bucket,
                Key=self.prefix + path,
                CopySource={"Bucket": other.bucket, "Key": other.prefix + path},
                MetadataDirective="COPY",  # keeps the sha256 the listing reads
            )
        return sorted(incoming)

    def presigned_url(self, path: str, expires_seconds: int = 300) -> str:
        return str(
            aws.presigning_client("s3").generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.prefix + path},
                ExpiresIn=expires_seconds,
            )
        )
