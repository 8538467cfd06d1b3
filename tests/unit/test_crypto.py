"""Envelope encryption against moto's KMS: round trip, context binding, tampering, the key cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tdev.crypto import MAGIC, NONCE_BYTES, DataKeyCache, DecryptionError, EnvelopeCipher

CONTEXT = {"table": "tdev", "pk": "EXEC#1", "attribute": "request"}


@pytest.fixture
def kms() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("kms", region_name="us-east-1")
        yield client, client.create_key()["KeyMetadata"]["KeyId"]


def test_round_trip_and_layout(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    cipher = EnvelopeCipher(key_id, kms=client)
    envelope = cipher.encrypt_text("add JWT login", CONTEXT)
    assert envelope.startswith(MAGIC)
    assert b"add JWT login" not in envelope
    assert cipher.decrypt_text(envelope, CONTEXT) == "add JWT login"
    # Two encryptions of the same text differ (fresh 12-byte nonce each time).
    assert cipher.encrypt_text("add JWT login", CONTEXT) != envelope


def test_a_fresh_cipher_decrypts_through_kms(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    envelope = EnvelopeCipher(key_id, kms=client).encrypt(b"secret", CONTEXT)
    reader = EnvelopeCipher(key_id, kms=client)
    assert reader.decrypt(envelope, CONTEXT) == b"secret"
    assert reader.kms_calls == 1


@pytest.mark.parametrize("fresh_reader", [False, True])
def test_wrong_context_is_refused(kms: tuple[Any, str], fresh_reader: bool) -> None:
    client, key_id = kms
    writer = EnvelopeCipher(key_id, kms=client)
    envelope = writer.encrypt(b"secret", CONTEXT)
    reader = EnvelopeCipher(key_id, kms=client) if fresh_reader else writer
    with pytest.raises(DecryptionError):
        reader.decrypt(envelope, {**CONTEXT, "pk": "EXEC#2"})


@pytest.mark.parametrize("where", ["ciphertext", "nonce", "tag"])
def test_tampering_is_detected(kms: tuple[Any, str], where: str) -> None:
    client, key_id = kms
    cipher = EnvelopeCipher(key_id, kms=client)
    envelope = bytearray(cipher.encrypt(b"a sensitive agent output", CONTEXT))
    header = 6 + int.from_bytes(envelope[4:6], "big")
    index = {"nonce": header, "ciphertext": header + NONCE_BYTES, "tag": len(envelope) - 1}[where]
    envelope[index] ^= 0x01
    with pytest.raises(DecryptionError, match="GCM"):
        cipher.decrypt(bytes(envelope), CONTEXT)


def test_garbage_and_truncation_are_refused(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    cipher = EnvelopeCipher(key_id, kms=client)
    with pytest.raises(DecryptionError, match="not an envelope"):
        cipher.decrypt(b"plain text", CONTEXT)
    with pytest.raises(DecryptionError, match="truncated"):
        cipher.decrypt(cipher.encrypt(b"x", CONTEXT)[:30], CONTEXT)


def test_data_keys_are_cached_and_bounded(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    cipher = EnvelopeCipher(key_id, kms=client, cache=DataKeyCache(max_entries=4, max_uses=3))
    for _ in range(3):
        cipher.encrypt(b"x", CONTEXT)
    assert cipher.kms_calls == 1  # one data key served three encryptions
    cipher.encrypt(b"x", CONTEXT)
    assert cipher.kms_calls == 2  # used up (max_uses), so a new key
    for n in range(10):
        cipher.encrypt(b"x", {"pk": str(n)})
    assert len(cipher.cache) <= 4
