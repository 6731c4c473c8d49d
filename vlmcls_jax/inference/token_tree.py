"""Candidates' tokens as a token tree (a trie), packed into fixed-width rows, for scoring them all at once.

Scoring candidate c = (c_0, ..., c_{n-1}) after a prompt needs the model's prediction after every prefix
c_0..c_j for j < n - 1 (c_0's comes from the prompt itself).  Candidates that start alike share those
prefixes ("golden retriever" and "golden eagle" share "golden"), so each distinct prefix is one *node*, fed
once: its token at position (prompt length + depth), attending to the prompt and to its ancestors.  The
ImageNet names after the study's prompt have 2253 such tokens, but only 1866 distinct nodes.

`pack` lays the nodes out in rows of `width` slots (a whole root-to-node path always inside one row, so a
node's ancestors are in its row; a path that does not fit starts a new row, repeating its ancestors there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class PackedTree:
    tokens: np.ndarray      # int32[R, W]   the node's token (0 in empty slots)
    depth: np.ndarray       # int32[R, W]   0 for a first token (position = prompt length + depth)
    mask: np.ndarray        # bool[R, W, W] mask[r, a, b]: slot b is slot a or one of its ancestors
    # one entry per scored token: candidate i's token j + 1 (j = 0 .. n - 2) is predicted at (row, slot)
    target_row: np.ndarray      # int32[K]
    target_slot: np.ndarray     # int32[K]
    target_token: np.ndarray    # int32[K]
    target_candidate: np.ndarray  # int32[K]
    target_index: np.ndarray    # int32[K]  the token's index in its candidate (j + 1)


def pack(candidates: Sequence[Sequence[int]], width: int) -> PackedTree:
    """candidates: C token lists; those of one token need no node (their only score comes from the prompt).
    width: slots per row, at least the longest candidate's length - 1."""
    items = sorted((tuple(c[:-1]), i) for i, c in enumerate(candidates) if len(c) > 1)
    if items and max(len(path) for path, _ in items) > width:
        raise ValueError(f"a candidate needs {max(len(p) for p, _ in items)} fed tokens, more than width={width}")
    rows: list[dict] = []
    targets = []                                          # (row, slot, token, candidate, index)
    for path, i in items:
        prefixes = [path[: d + 1] for d in range(len(path))]
        row = rows[-1] if rows else None
        new = [p for p in prefixes if row is None or p not in row["slot"]]
        if row is None or len(row["tokens"]) + len(new) > width:
            row = {"slot": {}, "tokens": [], "depth": [], "parent": []}
            rows.append(row)
            new = prefixes
        for node in new:
            row["slot"][node] = len(row["tokens"])
            row["parent"].append(row["slot"].get(node[:-1], -1))
            row["tokens"].append(node[-1])
            row["depth"].append(len(node) - 1)
        c = candidates[i]
        targets += [(len(rows) - 1, row["slot"][p], c[j + 1], i, j + 1) for j, p in enumerate(prefixes)]
    R = len(rows)
    tokens, depth = np.zeros((R, width), np.int32), np.zeros((R, width), np.int32)
    mask = np.zeros((R, width, width), bool)
    for r, row in enumerate(rows):
        n = len(row["tokens"])
        tokens[r, :n], depth[r, :n] = row["tokens"], row["depth"]
        for a in range(n):
            b = a
            while b >= 0:
                mask[r, a, b] = True
                b = row["parent"][b]
    t = np.array(targets, np.int32).reshape(-1, 5)
    return PackedTree(tokens, depth, mask, *(np.ascontiguousarray(t[:, k]) for k in range(5)))
