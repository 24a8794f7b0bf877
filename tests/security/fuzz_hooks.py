"""Schemathesis hooks for the fuzz run, loaded through SCHEMATHESIS_HOOKS.

The run authenticates as one admin. A generated request that revokes that admin's sessions,
deletes it or edits it would turn every later authenticated request into a 401, and the
rest of the run would stop exercising those operations: a generated path that names the
admin or its session names a random one instead.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import schemathesis

_PROTECTED = frozenset(
    os.environ[name] for name in ("FUZZ_ADMIN_ID", "FUZZ_ADMIN_SESSION") if os.environ.get(name)
)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    for name, value in case.path_parameters.items():
        if str(value) in _PROTECTED:
            case.path_parameters[name] = str(uuid.uuid4())
