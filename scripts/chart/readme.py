"""Generates the values table of helm/user-service/README.md from values.yaml's `# --` comments.

    python -m scripts.chart.readme --write    # after changing values.yaml
    python -m scripts.chart.readme --check    # exit 1 when README.md is stale

The table sits between the BEGIN/END markers below; the rest of the README is hand-written.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml

from scripts.chart.generated_file import wants_write, write_or_check
from scripts.chart.helm import CHART_DIR

VALUES = CHART_DIR / "values.yaml"
README = CHART_DIR / "README.md"
BEGIN = "<!-- BEGIN VALUES TABLE (generated: python -m scripts.chart.readme --write) -->"
END = "<!-- END VALUES TABLE -->"

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.\-]+):(\s|$)")
_DOC = re.compile(r"^\s*# -- ?(?P<text>.*)$")
_MORE = re.compile(r"^\s*# (?P<text>.*)$")


def documented_keys(text: str) -> dict[str, str]:
    """Dotted key path -> description, for every key preceded by a `# --` comment."""
    docs: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        if doc := _DOC.match(line):
            pending = [doc["text"].strip()]
            continue
        if pending is not None and (more := _MORE.match(line)):
            pending.append(more["text"].strip())
            continue
        match = _KEY.match(line)
        if not match or line.lstrip().startswith("-"):
            if line.strip() and not line.lstrip().startswith("#"):
                pending = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            docs[".".join(k for _, k in stack)] = " ".join(pending)
            pending = None
    return docs


def leaf_paths(values: Any, prefix: str = "") -> list[str]:
    """Every key whose value is not a non-empty mapping: what a user sets."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += leaf_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def undocumented(text: str) -> list[str]:
    docs = documented_keys(text)
    values = yaml.safe_load(text)

    def covered(path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:i]) in docs for i in range(1, len(parts) + 1))

    return [p for p in leaf_paths(values) if not covered(p)]


def _lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def _type(value: Any) -> str:
    return {
        bool: "bool",
        int: "int",
        float: "float",
        str: "string",
        list: "list",
        dict: "object",
        type(None): "null",
    }[type(value)]


def table(text: str) -> str:
    values = yaml.safe_load(text)
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for path, description in documented_keys(text).items():
        value = _lookup(values, path)
        default = json.dumps(value, separators=(", ", ": "))
        default = default.replace("|", "\\|")
        description = description.replace("|", "\\|")
        rows.append(f"| `{path}` | {_type(value)} | `{default}` | {description} |")
    return "\n".join(rows)


def rendered_readme() -> str:
    current = README.read_text()
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table(VALUES.read_text())}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    write = wants_write(argv, __doc__)
    missing = undocumented(VALUES.read_text())
    if missing:
        print(f"values without a `# --` description: {missing}", file=sys.stderr)
        return 1
    return write_or_check(
        README,
        rendered_readme(),
        write=write,
        stale_message="helm/user-service/README.md is stale: "
        "python -m scripts.chart.readme --write",
    )


if __name__ == "__main__":
    sys.exit(main())
