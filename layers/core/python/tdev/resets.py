"""What `tdev.container.reset()` forgets besides the core's own services.

Rooms that cache services of their own on top of the container's (`tdev.security.services`,
`tdev.sessions.service`) register their `reset` here when they are imported, so the container forgets them
without importing them (they import it), and importing this registry costs nothing (the authorizer's
services must not pull the repositories in at init).
"""

from __future__ import annotations

from collections.abc import Callable

_forgetters: list[Callable[[], None]] = []


def on_reset(forget: Callable[[], None]) -> Callable[[], None]:
    """Have `tdev.container.reset()` also call `forget`; returns it unchanged (usable as a decorator)."""
    if forget not in _forgetters:
        _forgetters.append(forget)
    return forget


def forget_all() -> None:
    for forget in list(_forgetters):
        forget()
