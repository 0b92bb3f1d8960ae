"""Schema migrations kept as numbered SQL files, one folder per backend (``sqlite/``, ``postgresql/``).

Each file is ``NNNN_name.sql``; its first line is a ``-- `` comment that describes it (recorded in
``schema_migrations``). The schema modules append these after their inline migrations, so a new
migration is a new file, not an edit of a shared list.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(backend: str) -> list[tuple[int, str, str]]:
    """``(version, description, sql)`` of every file in ``backend``'s folder, in version order."""
    found = []
    for path in sorted((HERE / backend).glob("[0-9][0-9][0-9][0-9]_*.sql")):
        sql = path.read_text(encoding="utf-8")
        first = sql.splitlines()[0] if sql else ""
        if not first.startswith("-- "):
            raise ValueError(f"migration {path.name}: the first line must be a '-- ' description")
        found.append((int(path.name[:4]), first[3:].strip(), sql))
    return found
