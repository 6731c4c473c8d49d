"""Screening a job's images before it starts: fail on the first unreadable one, or skip and count them.

    screened = screen_images(examples, lambda e: e.image, on_bad_image="skip")
    screened.kept       # the items whose image decodes (items without an image are always kept)
    screened.skipped    # [{"image": path, "error": message}, ...], in input order

`on_bad_image="error"` (every config's default) opens nothing here: the job decodes lazily and its first
unreadable image stops it with an error naming the file, as before.  `"skip"` decodes every image once up
front (threads: PIL releases the GIL while decoding), so a result is computed on a known set of examples
and says how many it left out: jobs write the list to WORKDIR/skipped_images.jsonl and the count next to
their metrics, whose denominators are the kept examples.  Unreadable means what `preprocess.load_image`
refuses: missing, empty, not an image, truncated, over `MAX_IMAGE_PIXELS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from vlmcls_jax.data.preprocess import load_image
from vlmcls_jax.fileio import write_jsonl

ON_BAD_IMAGE = ("error", "skip")
Item = TypeVar("Item")


@dataclasses.dataclass(frozen=True)
class Screened(Generic[Item]):
    kept: list[Item]
    skipped: list[dict]      # {"image": path, "error": message}

    def summary(self) -> dict:
        """The counts a job reports beside its metrics."""
        return {"kept": len(self.kept), "skipped_images": len(self.skipped)}


def _problem(path: str) -> str | None:
    try:
        load_image(path)
    except ValueError as e:
        return str(e)
    return None


def screen_images(items: Sequence[Item], image_of: Callable[[Item], str | None], on_bad_image: str = "error",
                  *, workers: int = 8) -> Screened[Item]:
    """Splits `items` into those whose image loads and those whose image does not (see the module doc).

    image_of: an item's image path, or None for an item without an image (kept, never opened).
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image={on_bad_image!r} is not one of {ON_BAD_IMAGE}")
    items = list(items)
    if on_bad_image == "error":
        return Screened(items, [])
    paths = [image_of(item) for item in items]
    to_check = sorted({p for p in paths if p is not None})
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = dict(zip(to_check, pool.map(_problem, to_check)))
    kept, skipped = [], []
    for item, path in zip(items, paths):
        if path is not None and problems[path] is not None:
            skipped.append({"image": path, "error": problems[path]})
        else:
            kept.append(item)
    if not kept:
        raise ValueError(f"every one of the {len(items)} images is unreadable; the first: {skipped[0]['error']}")
    return Screened(kept, skipped)


def write_skipped(path: str, screened: Screened) -> None:
    """WORKDIR/skipped_images.jsonl: one {"image", "error"} line per skipped item (written atomically)."""
    write_jsonl(path, screened.skipped)
