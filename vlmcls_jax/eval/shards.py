"""Splitting an evaluation over processes with exact counts.

Process i of n evaluates examples[i::n] (every example in exactly one share, whatever the dataset size)
and appends to its own part file `OUT.part{i}-of-{n}`; after a barrier the summary reads every part, so
each example is counted once.  Within a process, batches are padded with repeats whose results are
dropped, so the last batch never drops or double-counts an example either.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from vlmcls_jax.fileio import read_jsonl_by_id


def resolve(shard: tuple[int, int] | None) -> tuple[int, int]:
    """(index, count): the given share, or this process's among all JAX processes."""
    index, count = shard if shard is not None else (jax.process_index(), jax.process_count())
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in [0, {count})")
    return index, count


def part_path(out_path: str, index: int, count: int) -> str:
    return out_path if count == 1 else f"{out_path}.part{index}-of-{count}"


def barrier(count: int) -> None:
    """Waits for every process (a no-op in a single-process run)."""
    if count > 1 and jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("vlmcls_jax eval shards")


def gather(out_path: str, count: int, examples: Sequence, read_done=read_jsonl_by_id) -> tuple[list[dict], int]:
    """The records of `examples` found in all part files (`read_done(path)`: {id: record}; default JSON
    Lines), in example order, and how many are missing."""
    done: dict[str, dict] = {}
    for index in range(count):
        done.update(read_done(part_path(out_path, index, count)))
    records = [done[e.id] for e in examples if e.id in done]
    return records, len(examples) - len(records)


def padded_batches(items: Sequence, batch_size: int):
    """Yields (exactly batch_size items, how many are real): the last batch repeats its last item, so every
    batch has one compiled shape; callers keep only the first `real` results."""
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        real = len(chunk)
        yield chunk + [chunk[-1]] * (batch_size - real), real
