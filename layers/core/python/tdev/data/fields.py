"""Field-level encryption of sensitive attributes (request text, agent outputs) with tdev.crypto.

A sealed value is a string `tde1:<base64 envelope>`, so items keep their attribute types and models
validate the opened text. The encryption context binds each value to its table, item key and field: a
sealed value copied to another item or field does not open. Without a cipher (no KMS_KEY_ID: unit tests
of the repositories), values are stored as they are; a sealed value met without a cipher is an error,
never passed on as if it were text.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from tdev.crypto import EnvelopeCipher
from tdev.errors import ConfigurationError

PREFIX = "tde1:"


class FieldSealer:
    def __init__(self, cipher: EnvelopeCipher | None, table_name: str) -> None:
        self.cipher, self.table_name = cipher, table_name

    def _context(self, key: Mapping[str, str], field: str) -> dict[str, str]:
        return {"table": self.table_name, "PK": key["PK"], "SK": key["SK"], "field": field}

    def seal(self, value: str, key: Mapping[str, str], field: str) -> str:
        if self.cipher is None or value.startswith(PREFIX):
            return value
        envelope = self.cipher.encrypt_text(value, self._context(key, field))
        return PREFIX + base64.b64encode(envelope).decode()

    def open(self, value: str, key: Mapping[str, str], field: str) -> str:
        if not isinstance(value, str) or not value.startswith(PREFIX):
            return value
        if self.cipher is None:
            raise ConfigurationError(f"{field} is encrypted but KMS_KEY_ID is not set")
        envelope = base64.b64decode(value[len(PREFIX) :])
        return self.cipher.decrypt_text(envelope, self._context(key, field))
