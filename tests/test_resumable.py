"""The resumable, sharded evaluation loop (`eval.resumable.run_resumable`) and the file helpers it writes with
(`fileio`): a rerun computes only what its part file lacks, a share computes only its items, and the output is
one JSON line per item whatever was interrupted.  No model: the batch function is plain Python."""

from __future__ import annotations

import dataclasses
import json

import pytest

from vlmcls_jax.eval.resumable import run_resumable
from vlmcls_jax.fileio import read_jsonl_by_id, replacing, write_atomic


@dataclasses.dataclass(frozen=True)
class Item:
    id: str


ITEMS = [Item(c) for c in "abcde"]


def recorder(seen: list):
    """A batch function that notes every batch it gets and records each item's id twice over."""
    def fn(batch):
        seen.append([i.id for i in batch])
        return [{"id": i.id, "value": i.id * 2} for i in batch]
    return fn


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resumes_from_a_partial_file_with_a_torn_last_line(tmp_path):
    out = tmp_path / "sub" / "out.jsonl"
    out.parent.mkdir()
    out.write_text(json.dumps({"id": "b", "value": "bb"}) + "\n" + '{"id": "d", "val')   # killed mid-line
    seen = []
    run = run_resumable(ITEMS, str(out), 2, recorder(seen), (0, 1))
    # b was done; d's torn line is dropped and redone; the last batch is padded with a repeat of its last item
    assert seen == [["a", "c"], ["d", "e"]]
    assert (run.computed, run.missing) == (4, 0)
    assert [r["id"] for r in run.records] == ["a", "b", "c", "d", "e"]          # item order, not file order
    assert [r["id"] for r in lines(out)] == ["b", "a", "c", "d", "e"]           # one line each, appended
    assert run_resumable(ITEMS, str(out), 2, recorder(seen), (0, 1)).computed == 0   # nothing left to do
    assert len(seen) == 2


def test_a_share_computes_its_items_and_gathers_all_parts(tmp_path):
    out = str(tmp_path / "out.jsonl")
    seen = []
    second = run_resumable(ITEMS, out, 8, recorder(seen), (1, 2))
    assert seen == [["b", "d"] + ["d"] * 6]                                      # items[1::2], padded to 8
    assert (second.computed, second.missing) == (2, 3)                           # part 0 not written yet
    assert [r["id"] for r in lines(tmp_path / "out.jsonl.part1-of-2")] == ["b", "d"]
    first = run_resumable(ITEMS, out, 8, recorder(seen), (0, 2))
    assert (first.computed, first.missing) == (3, 0)
    assert [r["value"] for r in first.records] == ["aa", "bb", "cc", "dd", "ee"]
    assert not (tmp_path / "out.jsonl").exists()                                 # only part files


def test_direct_records_come_first_and_a_short_batch_is_an_error(tmp_path):
    out = tmp_path / "out.jsonl"
    seen = []
    run = run_resumable(ITEMS, str(out), 2, recorder(seen),
                        direct=lambda i: {"id": i.id, "value": None} if i.id in "bd" else None)
    assert seen == [["a", "c"], ["e", "e"]]
    assert [r["id"] for r in lines(out)] == ["b", "d", "a", "c", "e"]
    assert run.records[1] == {"id": "b", "value": None}
    with pytest.raises(ValueError, match="returned 1 records for a batch of 2"):
        run_resumable(ITEMS, str(tmp_path / "other.jsonl"), 2, lambda batch: [{"id": batch[0].id}])


def test_atomic_writes_leave_the_old_file_on_an_error(tmp_path):
    path = tmp_path / "results.json"
    write_atomic(str(path), "old")
    with pytest.raises(RuntimeError):
        with replacing(str(path)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        read_jsonl_by_id(str(bad))
