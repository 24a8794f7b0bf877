"""The process id the metrics use to tell workers apart follows every fork, without asking
the kernel on each sample."""

from __future__ import annotations

import os

from app.observability import metrics


def test_the_kept_process_id_is_renewed_in_a_forked_child() -> None:
    assert metrics._process_id() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, f"{metrics._process_id()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    kept, actual = os.read(read, 64).decode().split()
    os.close(read)
    os.waitpid(child, 0)
    assert kept == actual
    assert int(kept) != os.getpid()
    assert metrics._process_id() == os.getpid()
