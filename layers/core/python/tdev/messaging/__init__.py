"""Reliable messaging: the outbox publisher, queue definitions and routes, and idempotent consumers.

The outbox itself is a table write and lives in `tdev.data.outbox`."""
