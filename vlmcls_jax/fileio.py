"""The files every job writes: whole files replaced atomically, and JSON Lines appended as work finishes and
read back by id on a rerun.

  write_atomic(path, text)        a crash never leaves a truncated file: written beside it, then renamed over it
  replacing(path)                 the same for writers that take a path (np.save, np.savez): yields the temp path
  write_json / write_jsonl        write_atomic of one JSON document / of one JSON line per record
  append_jsonl(path, records)     appended and flushed (fsync=True: on disk before returning)
  read_jsonl_by_id(path)          {record["id"]: record}; a half-written last line (a killed run) is dropped

(Named `fileio`, not `io`: a module named like the standard library's would shadow it for a script run from
inside the package folder.)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` (same extension, so np.savez adds none; this process's id in it,
    so processes sharing a folder never share one) and renames it over `path` when the block succeeds; on an
    error the temporary file is removed and `path` is left as it was."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file renamed over it, so a crash never leaves a truncated
    file behind."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str, value, indent: int | None = 2, sort_keys: bool = False) -> None:
    """One JSON document, atomically."""
    write_atomic(path, json.dumps(value, indent=indent, sort_keys=sort_keys))


def jsonl_text(records: Iterable[dict]) -> str:
    """One `json.dumps(record)` line per record, each ending in a newline."""
    return "".join(json.dumps(r) + "\n" for r in records)


def write_jsonl(path: str, records: Iterable[dict]) -> None:
    """One JSON line per record, atomically (the whole file replaced)."""
    write_atomic(path, jsonl_text(records))


def append_jsonl(path: str, records: Iterable[dict], fsync: bool = False) -> None:
    """Appends one JSON line per record and flushes; fsync=True also waits until they are on disk."""
    with open(path, "a") as f:
        f.write(jsonl_text(records))
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def read_jsonl_by_id(path: str, key: str = "id") -> dict:
    """The records of a JSON Lines file by their `key` field ({} when there is no file; a later line with the
    same id replaces an earlier one).  A trailing line without its newline (the process died while writing
    it) is dropped from the file, so appending resumes on a line boundary; any other line that is not JSON
    is an error naming the file and line."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        with open(path, "w") as f:
            f.write(text)
    done = {}
    for n, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e}); remove the line to resume") from e
        done[record[key]] = record
    return done
