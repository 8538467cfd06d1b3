"""Reliable messaging: the transactional outbox, its publisher, queue definitions and idempotent consumers."""
