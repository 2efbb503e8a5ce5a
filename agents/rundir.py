"""The files of a run directory (``hnca train --out DIR``): written whole or not at all, and read
back with errors that name the file.

``config.json`` (the run's settings), ``params.msgpack`` (the trained policy), ``summary.json``
and ``eval.json`` are written by :func:`atomic_write`; :func:`load_json` and
:func:`load_msgpack` read them, turning a torn or damaged file into one ``ValueError`` naming it.
"""

from __future__ import annotations

import json
import os
from typing import Any


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file then rename, so an interruption never leaves half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_json(path: str | os.PathLike) -> dict:
    """A run's JSON record (``config.json``); a torn or damaged one is a ``ValueError`` naming it."""
    with open(path) as f:
        text = f.read()
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged or not JSON ({e})") from e
    if not isinstance(record, dict):
        raise ValueError(f"{path} is damaged: a JSON object was expected, got {type(record).__name__}")
    return record


def load_msgpack(path: str | os.PathLike, template: Any) -> Any:
    """``template``'s values from a ``flax.serialization`` file (``params.msgpack``); a torn,
    damaged or mismatched one is a ``ValueError`` naming it."""
    from flax import serialization

    with open(path, "rb") as f:
        data = f.read()
    try:
        return serialization.from_bytes(template, data)
    except Exception as e:  # msgpack and flax raise several types; all mean this file
        reason = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(f"{path} is damaged or unreadable ({type(e).__name__}: {reason})") from e
