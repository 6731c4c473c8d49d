"""The resumable, sharded loop every evaluator runs (generation, scoring, ImageWikiQA, the general benchmarks,
feature extraction):

    this process's share of the items (`shards`: items[i::n], its own part file)
    -> what its part already holds (a rerun after a kill skips those items)
    -> the rest in padded batches through `fn`, each batch's records appended and flushed as it finishes,
       under a progress bar
    -> a barrier (every process has finished its share)
    -> every part's records in item order, and how many items no part has yet.

Where records go is the `store`'s business: `JsonlParts` (one JSON line per item with its "id", in
OUT.part{i}-of-{n}; the evaluators' format) by default; `analysis.features.FeatureChunks` keeps arrays in
.npz chunks.  A store has `key(item)`, `read(index, count)` (the keys already stored), `appender(index, count)`
(a context manager yielding `append(records)`) and `gather(count, items)` (-> (records or None, missing)).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence

from tqdm import tqdm

from vlmcls_jax.eval import shards
from vlmcls_jax.fileio import append_jsonl, read_jsonl_by_id


@dataclasses.dataclass(frozen=True)
class Resumed:
    records: list[dict] | None   # every part's records in item order (None: the store leaves reading to the caller)
    missing: int                 # items no part holds a record of yet
    computed: int                # items this process recorded now (the rest of its share was already stored)


class JsonlParts:
    """Records as JSON lines keyed by "id", in `out_path` (one process) or `out_path.part{i}-of-{n}`."""

    def __init__(self, out_path: str):
        self.out_path = out_path

    @staticmethod
    def key(item):
        return item.id

    def read(self, index: int, count: int) -> dict:
        return read_jsonl_by_id(shards.part_path(self.out_path, index, count))

    @contextlib.contextmanager
    def appender(self, index: int, count: int):
        path = shards.part_path(self.out_path, index, count)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        append_jsonl(path, [])   # the part file exists once its share has started, even an empty share
        yield lambda records: append_jsonl(path, records)

    def gather(self, count: int, items: Sequence) -> tuple[list[dict], int]:
        return shards.gather(self.out_path, count, items)


def run_resumable(items: Sequence, out_path: str, batch_size: int, fn: Callable[[list], Sequence],
                  share: tuple[int, int] | None = None, *, store=None, desc: str = "eval", unit: str = "item",
                  direct: Callable[[object], dict | None] | None = None) -> Resumed:
    """Records every item of this process's share that `out_path` does not hold yet, and gathers all parts.

    items: objects with `.id` (unique).  fn: exactly `batch_size` items (the last batch padded with repeats of
    its last item, so one shape compiles) -> one record per item, in order; the repeats' records are dropped.
    share: (index, count) of processes; None: this JAX process among all (`shards.resolve`).
    store: where records go (default `JsonlParts(out_path)`).  desc, unit: the progress bar's.
    direct: item -> its record without running `fn` (e.g. a question whose image is missing, recorded as
    wrong), or None to run it; direct records are appended first, before any batch.
    Returns `Resumed(records, missing, computed)`."""
    items = list(items)
    store = JsonlParts(out_path) if store is None else store
    index, count = shards.resolve(share)
    mine = items[index::count]
    done = store.read(index, count)
    todo = [item for item in mine if store.key(item) not in done]
    computed = len(todo)
    with store.appender(index, count) as append, \
            tqdm(total=len(mine), initial=len(mine) - len(todo), desc=desc, unit=unit) as bar:
        if direct is not None:
            settled = [(item, direct(item)) for item in todo]
            ready = [record for _, record in settled if record is not None]
            todo = [item for item, record in settled if record is None]
            append(ready)
            bar.update(len(ready))
        for batch, real in shards.padded_batches(todo, batch_size):
            records = list(fn(batch))
            if len(records) != len(batch):
                raise ValueError(f"{out_path}: the batch function returned {len(records)} records for a batch of "
                                 f"{len(batch)} items (one per item, padding included)")
            append(records[:real])
            bar.update(real)
    shards.barrier(count)
    records, missing = store.gather(count, items)
    return Resumed(records, missing, computed)
