"""The toy world's data: enough classes, a real long tail, the project's own formats, deterministic for a
seed.  (The whole pipeline runs in tests/test_notebooks.py through colabs/quickstart.ipynb.)"""

import hashlib
import json
import random

import numpy as np

from vlmcls_jax.analysis.frequency import FrequencyCounter
from vlmcls_jax.data.imagewikiqa import read_imagewikiqa
from vlmcls_jax.data.pipeline import read_records
from vlmcls_jax.data.sources import ClassList, read_manifest
from vlmcls_jax.eval.answer_parser import parse_choice, study_response
from vlmcls_jax.toyworld import knowledge, report, seeds, world

SMALL = world.WorldSizes(clip_pairs=60, captions=300, instructions=300, qa_instructions=60, facts_per_class=1,
                         classification=55, test_per_class=1, probe_train_per_class=1)


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_world_formats_tail_and_determinism(tmp_path):
    paths = world.build(str(tmp_path / "a"), 3, SMALL)
    names = json.load(open(paths["classes"]))
    assert len(names) == len(set(names)) >= 50
    classes = ClassList(tuple(names))
    test = read_manifest(paths["manifest"], paths["root"], classes, split="test")
    assert sorted(e.label_name for e in test) == sorted(names)                  # balanced test split
    for key in ("captions", "instructions", "classification"):
        assert read_records(paths[key])                                          # LLaVA conversation JSON
    weights = np.array(list(json.load(open(paths["class_weights"])).values()))
    assert weights.max() / weights.min() > 50                                    # a long tail
    counter = FrequencyCounter(names, count_edges=True)
    counter.add(paths["instructions"])
    counts = counter.result().counts
    head = np.argsort(-weights)[:5]
    tail = np.argsort(weights)[:20]
    assert counts[head].mean() > 5 * max(counts[tail].mean(), 0.5)              # the text follows the tail
    world.build(str(tmp_path / "b"), 3, SMALL)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")                      # same seed, same bytes
    world.build(str(tmp_path / "c"), 4, SMALL)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_render_draws_each_shape_differently():
    images = {s: np.asarray(world.render(world.Sample(f"red {s}", "solid", "grey"), 32,
                                         np.random.default_rng(1))) for s in world.SHAPES}
    red = {s: (img[..., 0] > 180) & (img[..., 1] < 90) for s, img in images.items()}
    assert len({m.tobytes() for m in red.values()}) == len(world.SHAPES)
    assert all(m.sum() > 60 for m in red.values())


def test_knowledge_questions_need_the_class_and_its_home(tmp_path):
    paths = world.build(str(tmp_path), 3, SMALL)
    names, home = json.load(open(paths["classes"])), json.load(open(paths["homes"]))
    assert set(home) == set(names) and set(home.values()) <= set(knowledge.PLACES)
    assert len(set(home.values())) > 6                                          # homes differ between classes
    questions, report = read_imagewikiqa(paths["wikiqa"], paths["root"], require_images=True)
    assert report["missing_images"] == 0
    assert sorted(q.classname for q in questions) == sorted(names)              # one per balanced test image
    for q in questions:
        assert q.question == knowledge.QUESTION and len(q.options) == 4
        assert q.options[q.label] == home[q.classname]                          # the right option is the home
    records = read_records(paths["instructions"])
    facts = [r for r in records if r["id"].startswith("fact")]
    qa = [r for r in records if r["id"].startswith("qa")]
    assert all("image" not in r for r in facts)
    turns = [t["value"] for r in facts for t in r["conversations"]]
    expected = [knowledge.fact(n, home[n]) for n in names for _ in range(SMALL.facts_per_class)]
    assert sorted(turns[1::2]) == sorted(expected)
    assert turns[0::2] == [f"Where does the {a.split(' lives')[0].removeprefix('The ')} live?" for a in turns[1::2]]
    assert len(qa) == SMALL.qa_instructions and all("image" in r for r in qa)
    for r in qa:                           # a perfect answer parses to the right option (the study's parser)
        text = r["conversations"][0]["value"].removeprefix("<image>\n")
        options = {line[0]: line[3:] for line in text.split("\n")[1:5]}
        reply = r["conversations"][1]["value"].removeprefix(knowledge.CHAIN_OF_THOUGHT).strip()
        letter, how = parse_choice(study_response(reply), options, random.Random(0))
        assert how == "text" and options[letter] == reply.split()[-1].rstrip(".")   # the place it names
        named, said = reply.split(". ", 1)                     # the recognition, then the fact's own sentence
        assert said == knowledge.fact(named.removeprefix("The object is a "), options[letter])


def test_the_vlms_text_sometimes_names_the_general_word(tmp_path):
    """The mechanism of probabilistic inference's gain (world.py): the VLM's captions and image instructions
    say "purple shape" for a purple cross GENERAL_RATE of the time; CLIP's captions, the classification data,
    the facts and the knowledge answers always name the class."""
    rng = np.random.default_rng(0)
    drawn = [world.Sample("purple cross", "solid", "grey").fields(rng)["name"] for _ in range(2000)]
    assert set(drawn) == {"purple cross", "purple shape"}
    assert abs(drawn.count("purple shape") / 2000 - world.GENERAL_RATE) < 0.04
    assert world.Sample("purple cross", "solid", "grey").fields()["name"] == "purple cross"
    paths = world.build(str(tmp_path), 3, SMALL)
    names = json.load(open(paths["classes"]))
    general = {world.general_name(n) for n in names}
    assert not general & set(names)
    def says_general(text):
        return any(g in text for g in general)
    assert not any(says_general(json.loads(line)["caption"]) for line in open(paths["clip_pairs"]))
    records = read_records(paths["captions"]) + read_records(paths["instructions"])
    answers = {k: [t["value"] for r in records if r["id"].startswith(k) for t in r["conversations"][1::2]]
               for k in ("cap", "ins", "qa", "fact")}
    for k in ("cap", "ins"):       # every caption names the object; instructions: the colour question does not
        share = np.mean([says_general(a) for a in answers[k]])
        assert 0.5 * world.GENERAL_RATE < share < 1.2 * world.GENERAL_RATE, (k, share)
    assert not any(says_general(a) for k in ("qa", "fact") for a in answers[k])
    assert not any(says_general(t["value"]) for r in read_records(paths["classification"]) for t in r["conversations"])


def test_seed_intervals_and_verdicts(tmp_path):
    # Student's t over 3 seeds, by hand: mean 0.8, sd 0.1, sem 0.1 / sqrt 3, t(0.975, df 2) = 4.302653
    mean, low, high = seeds.interval([0.7, 0.8, 0.9])
    assert np.isclose(mean, 0.8) and np.isclose(high - mean, 4.302653 * 0.1 / np.sqrt(3), atol=1e-5)
    # One seed: Clopper-Pearson for 5 of 10 (tables: 0.1871 to 0.8129)
    assert np.allclose(seeds.interval([0.5], n=10), (0.5, 0.18709, 0.81291), atol=1e-4)
    assert seeds.verdict(["reproduced"] * 3) == "reproduced"
    assert seeds.verdict(["reproduced", report.NOISE, "reproduced"]) == report.NOISE
    assert seeds.verdict(["reproduced", "not reproduced", report.NOISE]) == "not reproduced"
    keys = [k for k, _ in seeds.ACCURACIES]
    summaries = [dict({k: 0.5 + 0.1 * s for k in keys}, spearman_r=0.5, seconds=60, seed=s, examples=550,
                      knowledge_questions=550, claims=["A", "B"], evidence=["x", "y"],
                      findings=["reproduced", "reproduced" if s else report.NOISE]) for s in range(3)]
    out = seeds.write(str(tmp_path), summaries, quick=True)
    assert out["verdicts"] == ["reproduced", report.NOISE]
    text = (tmp_path / "report.md").read_text()
    assert text.split("\n")[2] == report.QUICK_WARNING                           # at the top, plainly
    assert "| A | reproduced |" in text and np.isclose(out["accuracies"]["clip"]["mean"], 0.6)


def test_seeds_run_whole_worlds_in_their_own_folders(tmp_path, monkeypatch):
    """config.seeds = 3: seeds seed, seed + 1, seed + 2, each run alone in WORKDIR/seed_K, then summarised."""
    from configs import toyworld as toy_config
    from vlmcls_jax.toyworld import pipeline
    ran = []
    keys = [k for k, _ in seeds.ACCURACIES]

    def fake_run_seed(config, workdir):
        ran.append((config.seed, config.seeds, workdir))
        return dict({k: 0.5 for k in keys}, spearman_r=0.5, seconds=1, seed=config.seed, examples=550,
                    knowledge_questions=550, claims=["A"], evidence=["x"], findings=["reproduced"])

    monkeypatch.setattr(pipeline, "run_seed", fake_run_seed)
    config = toy_config.get_config()
    config.seed, config.seeds = 5, 3
    out = pipeline.run(config, str(tmp_path))
    assert ran == [(s, 1, str(tmp_path / f"seed_{s}")) for s in (5, 6, 7)] and config.seed == 5
    assert out["seeds"] == [5, 6, 7] and (tmp_path / "report.md").exists()
    assert report._with_interval(0.5, 10) == "50.0 (18.7 to 81.3)"
