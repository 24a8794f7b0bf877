"""Development's embedded mode (SQLite, an in-process Redis) and the packages it needs.

They are an extra (`user-service[embedded]`, scripts/requirements/embedded.txt), never in the image:
a start without a database or Redis URL where they are missing says so, naming the variable.
"""

from __future__ import annotations

import importlib.util


class EmbeddedModeUnavailableError(RuntimeError):
    pass


def require_embedded_extra(module: str, variable: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise EmbeddedModeUnavailableError(
            f"{variable} is not set and the embedded development mode is not installed "
            f"({module} missing): set {variable}, or install the `embedded` extra "
            "(scripts/requirements/embedded.txt)"
        )
