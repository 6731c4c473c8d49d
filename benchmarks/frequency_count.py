"""Speed of the class-frequency count (vlmcls_jax.analysis.frequency) on a synthetic LLaVA-665K-sized corpus.

    python benchmarks/frequency_count.py [--records 665000] [--seed 0] [--via-file]

The corpus is drawn from a seed: 1-3 human/gpt turn pairs per record, a human question with `<image>`, gpt
answers of 1-5 sentences of 6-18 words, a class name in about a third of the sentences. Class names are the
1000 ImageNet names of the study's imagenet_classes.json (shipped in vlmcls_jax/data/study_data). Records are
built from a pool of distinct records (drawing every one fresh would take longer than counting them); the
counter caches nothing, so repeats cost the same. --via-file also writes the corpus as one JSON list to a temporary file and counts from the path (adds
JSON parsing, as on the real files). Prints records/s and the total time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vlmcls_jax.analysis.frequency import FrequencyCounter  # noqa: E402
from vlmcls_jax.data.study import class_list_path  # noqa: E402

QUESTIONS = ["What is in the image?", "Describe the picture in detail.", "What is the {} doing?",
             "Is there a {} in this photo? Answer the question using a single word or phrase.",
             "Render a clear and concise summary of the photo."]


def class_names() -> list[str]:
    with open(class_list_path("imagenet")) as f:
        return json.load(f)


def make_pool(rng: random.Random, names: list[str], size: int) -> list[dict]:
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(5000)]
    vocab += ["the", "a", "of", "and", "in", "is", "with", "on", "to", "image", "picture", "there"] * 50

    def sentence() -> str:
        words = rng.choices(vocab, k=rng.randint(6, 18))
        if rng.random() < 0.35:
            words.insert(rng.randrange(len(words) + 1), rng.choice(names))
        if rng.random() < 0.3:
            words[rng.randrange(len(words))] += ","
        return " ".join(words).capitalize() + rng.choice([".", ".", ".", "!", "?", ""])

    pool = []
    for i in range(size):
        turns = []
        for t in range(rng.randint(1, 3)):
            question = rng.choice(QUESTIONS).format(rng.choice(names))
            turns.append({"from": "human", "value": f"<image>\n{question}" if t == 0 else question})
            turns.append({"from": "gpt", "value": " ".join(sentence() for _ in range(rng.randint(1, 5)))})
        pool.append({"id": str(i), "image": f"{i:09d}.jpg", "conversations": turns})
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=665_000)
    parser.add_argument("--pool", type=int, default=50_000, help="distinct records to draw from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--via-file", action="store_true", help="also count from a temporary JSON file")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    names = class_names()
    pool = make_pool(rng, names, min(args.pool, args.records))
    records = [pool[rng.randrange(len(pool))] for _ in range(args.records)]
    chars = sum(len(t["value"]) for r in records for t in r["conversations"])
    print(f"corpus: {len(records)} records, {chars / 1e6:.0f} M characters of turn text, {len(names)} names")

    start = time.perf_counter()
    counter = FrequencyCounter(names)
    counter.add(records)
    seconds = time.perf_counter() - start
    print(f"in memory: {seconds:.1f} s total, {len(records) / seconds:,.0f} records/s, "
          f"{counter.sentences / seconds:,.0f} sentences/s ({counter.sentences} sentences)")

    if args.via_file:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "corpus.json")
            with open(path, "w") as f:
                json.dump(records, f)
            size = os.path.getsize(path)
            start = time.perf_counter()
            counter = FrequencyCounter(names)
            counter.add(path)
            seconds = time.perf_counter() - start
            print(f"from a {size / 1e6:.0f} MB JSON file: {seconds:.1f} s total, "
                  f"{len(records) / seconds:,.0f} records/s")


if __name__ == "__main__":
    main()
