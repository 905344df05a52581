"""Durable per-connector cursors: one small JSON file per connector, replaced atomically.

Layout: ``<directory>/<connector>.json`` holding ``{"connector": ..., "cursor": ...,
"saved_at": <unix seconds>}``. A save writes ``<connector>.json.tmp``, fsyncs it and
renames it over the old file, so a crash leaves either the old or the new cursor,
never a torn one. The runner saves a cursor only after every Mention fetched before
it was acknowledged by Kafka, so a restart resumes without gaps (at-least-once;
the overlap is dropped by id). Keep the directory on a persistent volume; one
``listen`` process per directory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from listener.errors import FatalError


class CursorStore:
    """Loads and saves connector cursors under ``directory``.

    Args:
        directory: Where the cursor files live; created on first save.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, connector: str) -> Path:
        """The file holding ``connector``'s cursor."""
        return self.directory / f"{connector}.json"

    def load(self, connector: str) -> str | None:
        """The saved cursor, or None if there is none yet.

        Raises:
            FatalError: The file exists but is not a cursor file (refuse to guess).
        """
        path = self.path(connector)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise FatalError(f"cursor file {path} is unreadable: {exc}; fix or delete it") from exc
        cursor = data.get("cursor") if isinstance(data, dict) else None
        if cursor is not None and not isinstance(cursor, str):
            raise FatalError(f"cursor file {path}: 'cursor' must be a string")
        return cursor

    def save(self, connector: str, cursor: str | None) -> None:
        """Persist ``cursor`` atomically (tmp file, fsync, rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(connector)
        tmp = path.with_suffix(".json.tmp")
        body = json.dumps({"connector": connector, "cursor": cursor, "saved_at": time.time()})
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
