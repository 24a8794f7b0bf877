"""The command line every chart generator shares: --write regenerates its file, --check exits
1 when the file on disk is not what the generator would write."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def wants_write(argv: list[str] | None, doc: str) -> bool:
    """Parses --write or --check (exactly one); True for --write."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    write: bool = parser.parse_args(argv).write
    return write


def write_or_check(output: Path, text: str, *, write: bool, stale_message: str) -> int:
    """Writes `text` to `output`, or says `stale_message` and returns 1 when they differ."""
    if write:
        output.write_text(text)
        return 0
    if not output.exists() or output.read_text() != text:
        print(stale_message, file=sys.stderr)
        return 1
    return 0
