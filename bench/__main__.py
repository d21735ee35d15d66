"""`python -m bench [NAME ...]`: run the benchmarks (all five by default), then repeat
their summary lines together. Sizes come from BENCH_* variables (see each module)."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable

from bench import admin, memory, scheduler, send, signup

BENCHMARKS: dict[str, Callable[[list[str]], object]] = {
    "send": send.main,
    "scheduler": scheduler.main,
    "signup": signup.main,
    "memory": memory.main,
    "admin": admin.main,
}


class _Tee(io.TextIOBase):
    """Writes through to stdout and keeps the SUMMARY lines."""

    def __init__(self) -> None:
        self.summaries: list[str] = []

    def write(self, text: str) -> int:
        self.summaries += [line for line in text.splitlines() if line.startswith("SUMMARY ")]
        return sys.__stdout__.write(text) if sys.__stdout__ else len(text)

    def flush(self) -> None:
        if sys.__stdout__:
            sys.__stdout__.flush()


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    tee = _Tee()
    with contextlib.redirect_stdout(tee):
        for name in names:
            BENCHMARKS[name]([])
            print()
    print("\n".join(tee.summaries))


if __name__ == "__main__":
    main()
