"""How many generated inputs each property test tried, and how many failed, for the
one-line summaries at the end of the test run (tests/conftest.py)."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
TRIED: Counter[str] = Counter()
FAILED: Counter[str] = Counter()


def counted(name: str) -> Callable[[F], F]:
    """Count every call of the test body under `name` (a failing call raises on)."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            TRIED[name] += 1
            try:
                return test(*args, **kwargs)
            except BaseException:
                FAILED[name] += 1
                raise

        return wrapper  # type: ignore[return-value]

    return decorate


def export() -> dict[str, dict[str, int]]:
    """This process's counts, for an xdist worker to hand to the controller."""
    return {"tried": dict(TRIED), "failed": dict(FAILED)}


def merge(counts: dict[str, dict[str, int]]) -> None:
    TRIED.update(counts.get("tried", {}))
    FAILED.update(counts.get("failed", {}))


def summary() -> list[str]:
    return [f"{name}: {TRIED[name]} inputs tried, {FAILED[name]} failed" for name in sorted(TRIED)]
