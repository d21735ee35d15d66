"""drip: a self-hosted email drip-campaign service.

`drip.create_app()` is the Flask application factory (imported lazily, so the worker and
the scheduler never load the web stack).
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from drip.web import create_app

        return create_app
    raise AttributeError(name)
