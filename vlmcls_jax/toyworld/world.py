"""The toy world: a procedurally rendered image-classification world in which the study's story can play out
on a CPU in minutes.

Classes are `{colour} {shape}` (11 colours x 5 shapes = 55 classes, e.g. "purple cross"); each image also
has a nuisance texture (solid, striped, dotted), a background (one of five tints with noise), a size and a
position.  Everything is drawn from a seed.

The data mirror the study's setting:
  - CLIP's image-caption pairs cover every class equally (CLIP saw the whole web);
  - the VLM's alignment captions and instruction conversations follow a long-tailed (Zipf) class
    distribution, so some classes are common and some almost absent from the VLM's training text;
  - classification data (the study's fix) cover every class equally;
  - test images are balanced over classes.

Which mechanism produces which of the study's findings (properties of the data; the report judges them):
  - The VLM is worse than its CLIP; per-class accuracy follows class frequency: the VLM's text follows the
    long tail, CLIP's captions do not.
  - Probabilistic inference helps (the study's Table 2: generated answers miss the label's wording): the
    VLM's image-grounded text (its alignment captions and instruction answers) calls the object by a more
    general word GENERAL_RATE of the time ("a purple shape" for a purple cross), as real captions say "a
    dog" for a golden retriever.  Greedy decoding says the general word exactly where the decoder is unsure
    of the shape (its probability of the shape's word falls under that of "shape"), which the study's
    substring rule does not count; scoring the 55 label names still ranks them by the decoder's colour and
    shape evidence, and the general word's share is the same for every label, so the likeliest label is
    still the right one on many of those images.
  - Probes beat the answers (Table 3 left: the class is in the hidden states): the same images whose answer
    is the general word carry their shape in the decoder's states; a linear probe reads it out.
  - Classification data close the gap (Table 3 right, Table 5): they always name the class, so the projector
    (and, in the mixture, the decoder) learns to make the decoder sure enough to name it.
  - The mixture lifts the knowledge questions (Table 5's ImageWikiQA): each class's home is stated only in
    text-only facts naming the class (knowledge.py: balanced, as a real LLM knows about every class), and
    the image questions' answers name the class, then say that fact's sentence ("The object is a red
    circle. The red circle lives in the meadow."), so the home follows the class the VLM recognised: naming
    the class better (the classification data) answers more questions.
All data are written in the real formats (the study's JSONL manifests, LLaVA's conversation JSON) so every
later stage runs through the same readers, trainer and evaluators as full-size runs.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from vlmcls_jax.data.conversation import classification_record
from vlmcls_jax.toyworld import knowledge

COLOURS = {"red": (215, 35, 35), "orange": (240, 140, 20), "yellow": (235, 225, 40), "lime": (160, 235, 60),
           "green": (30, 140, 50), "cyan": (40, 210, 220), "blue": (35, 70, 215), "purple": (135, 45, 190),
           "pink": (245, 130, 200), "brown": (120, 70, 30), "white": (250, 250, 250)}
SHAPES = ("circle", "square", "triangle", "cross", "ring")
TEXTURES = ("solid", "striped", "dotted")
BACKGROUNDS = {"grey": (128, 128, 128), "dark": (50, 50, 60), "sand": (190, 170, 130), "teal": (60, 110, 110),
               "olive": (110, 110, 60)}

CAPTION_QUESTION = "Describe the image briefly."
INSTRUCTION_QUESTIONS = (   # (question, answer template); {colour} {shape} {texture} {background} {name}
    ("What type of object is in this photo?", "{name}"),
    ("What is in the picture?", "The picture shows a {texture} {name} on a {background} background."),
    ("What colour is the object?", "The {shape} is {colour}."),
    ("What shape is the object?", "It is a {shape}, a {name}."),
    ("Describe the object.", "A {name} with a {texture} pattern."),
)


# The VLM's image-grounded text calls the object by a more general word this often ("a purple shape" for a
# purple cross; the module doc says why).
GENERAL_RATE = 0.4


def general_name(name: str) -> str:
    """The more general word for a class: its colour and "shape" ("purple cross" -> "purple shape")."""
    return f"{name.split()[0]} shape"


def class_names() -> list[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One rendered image's content."""
    name: str
    texture: str
    background: str

    @property
    def colour(self) -> str:
        return self.name.split()[0]

    @property
    def shape(self) -> str:
        return self.name.split()[1]

    def fields(self, rng: np.random.Generator | None = None) -> dict:
        """Template fields.  With RNG (the VLM's image-grounded text), the name is the general word
        (`general_name`) GENERAL_RATE of the time."""
        name = self.name
        if rng is not None and rng.random() < GENERAL_RATE:
            name = general_name(self.name)
        return {"name": name, "colour": self.colour, "shape": self.shape, "texture": self.texture,
                "background": self.background}


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """bool[size, size]: where the shape is."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    # Centred, large, a little jitter: a ViT trained from scratch in minutes learns shapes this way, not
    # when they can sit anywhere (tried: linear probes on its tokens stayed near chance for shape).
    r = size * rng.uniform(0.34, 0.44)
    cx, cy = size / 2 + rng.uniform(-0.06, 0.06, 2) * size
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), fill=255)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=255)
    elif shape == "cross":
        w = 0.33 * r
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=255)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        draw.ellipse((cx - 0.5 * r, cy - 0.5 * r, cx + 0.5 * r, cy + 0.5 * r), fill=0)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    return np.asarray(mask) > 127


def render(sample: Sample, size: int, rng: np.random.Generator) -> Image.Image:
    """A size x size RGB image of the sample."""
    background = np.array(BACKGROUNDS[sample.background], np.float32)
    pixels = background + rng.normal(0, 12, (size, size, 3))
    mask = _shape_mask(sample.shape, size, rng)
    colour = np.array(COLOURS[sample.colour], np.float32)
    fill = np.broadcast_to(colour, (size, size, 3)).copy()
    yy, xx = np.mgrid[:size, :size]
    if sample.texture == "striped":
        fill[(yy // 2) % 2 == 0] *= 0.75
    elif sample.texture == "dotted":
        fill[((yy % 4) == 1) & ((xx % 4) == 1)] *= 0.5
    pixels[mask] = fill[mask] + rng.normal(0, 6, (int(mask.sum()), 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def zipf_weights(num_classes: int, exponent: float, seed: int) -> np.ndarray:
    """float[C] class probabilities ~ 1 / rank^exponent, ranks assigned to classes by a seeded permutation."""
    ranks = np.random.default_rng(seed).permutation(num_classes) + 1
    w = 1.0 / ranks.astype(np.float64) ** exponent
    return w / w.sum()


@dataclasses.dataclass(frozen=True)
class WorldSizes:
    clip_pairs: int = 3000           # CLIP's image-caption pairs (balanced)
    captions: int = 2000             # the VLM's alignment captions (long-tailed)
    instructions: int = 3000         # the VLM's instruction conversations (long-tailed)
    qa_instructions: int = 350       # of which ImageWikiQA-style image questions (long-tailed; knowledge.py)
    facts_per_class: int = 4         # text-only statements of each class's home (knowledge.FACTS_PER_RECORD
                                     # to a record), added to the instructions
    classification: int = 1800       # classification fine-tuning examples (balanced)
    test_per_class: int = 10         # balanced test images
    probe_train_per_class: int = 10  # balanced images for training linear probes
    image_size: int = 32
    zipf_exponent: float = 1.3


def _samples(rng, n: int, weights: np.ndarray) -> list[Sample]:
    names = class_names()
    idx = rng.choice(len(names), size=n, p=weights)
    return [Sample(names[i], TEXTURES[rng.integers(len(TEXTURES))],
                   list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]) for i in idx]


def _balanced(rng, per_class: int) -> list[Sample]:
    names = class_names()
    out = [Sample(n, TEXTURES[rng.integers(len(TEXTURES))], list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))])
           for n in names for _ in range(per_class)]
    return [out[i] for i in rng.permutation(len(out))]


def caption(sample: Sample, rng: np.random.Generator, general: bool = False) -> str:
    """A caption; GENERAL (the VLM's alignment captions): the name is sometimes the general word."""
    templates = ("a photo of a {name}.", "a photo of a {name}.", "a {texture} {name} on a {background} background.",
                 "a {name} with a {texture} pattern.")
    template = templates[rng.integers(len(templates))]
    return template.format(**sample.fields(rng if general else None))


def build(root: str, seed: int, sizes: WorldSizes = WorldSizes()) -> dict:
    """Renders the world under ROOT and writes its data files; returns their paths and statistics.

    ROOT/images/*.png; ROOT/classes.json; ROOT/manifest.jsonl (the study's manifest format: image, label,
    split in {"probe_train", "test"}); ROOT/clip_pairs.jsonl ({"image", "caption"}); ROOT/captions.json,
    ROOT/instructions.json (LLaVA conversation JSON, with the knowledge questions and facts of
    knowledge.py); ROOT/classification.json (the study's classification template, balanced);
    ROOT/class_weights.json (the long tail's class probabilities); ROOT/wikiqa.jsonl (the ImageWikiQA
    analogue on the test images, in the released format); ROOT/homes.json (each class's home)."""
    rng = np.random.default_rng(seed)
    names = class_names()
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    count = [0]

    def save(sample: Sample) -> str:
        path = f"images/{count[0]:05d}.png"
        render(sample, sizes.image_size, rng).save(os.path.join(root, path))
        count[0] += 1
        return path

    uniform = np.full(len(names), 1 / len(names))
    tail = zipf_weights(len(names), sizes.zipf_exponent, seed)
    clip_pairs = [{"image": save(s), "caption": caption(s, rng)} for s in _samples(rng, sizes.clip_pairs, uniform)]
    captions = [{"id": f"cap{i}", "image": save(s), "conversations": [
        {"from": "human", "value": f"<image>\n{CAPTION_QUESTION}"},
        {"from": "gpt", "value": caption(s, rng, general=True)}]}
        for i, s in enumerate(_samples(rng, sizes.captions, tail))]
    instructions = []
    for i, s in enumerate(_samples(rng, sizes.instructions - sizes.qa_instructions, tail)):
        q, a = INSTRUCTION_QUESTIONS[rng.integers(len(INSTRUCTION_QUESTIONS))]
        instructions.append({"id": f"ins{i}", "image": save(s), "conversations": [
            {"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a.format(**s.fields(rng))}]})
    classification = [classification_record(save(s), s.name, record_id=f"cls{i}")
                      for i, s in enumerate(_samples(rng, sizes.classification, uniform))]
    manifest = [{"image": save(s), "label": s.name, "split": split}
                for split, per_class in (("probe_train", sizes.probe_train_per_class), ("test", sizes.test_per_class))
                for s in _balanced(rng, per_class)]
    # The knowledge questions' images are rendered last; their options and the shuffle use their own generator.
    home = knowledge.homes(names, seed)
    qa_rng = np.random.default_rng([seed, 8])
    instructions += [knowledge.qa_record(f"qa{i}", save(s), s.name, home[s.name], qa_rng)
                     for i, s in enumerate(_samples(rng, sizes.qa_instructions, tail))]
    facts = [(n, home[n]) for _ in range(sizes.facts_per_class) for n in names]
    facts = [facts[i] for i in qa_rng.permutation(len(facts))]
    per = knowledge.FACTS_PER_RECORD
    instructions += [knowledge.fact_record(f"fact{i // per}", facts[i:i + per]) for i in range(0, len(facts), per)]
    instructions = [instructions[i] for i in qa_rng.permutation(len(instructions))]
    wikiqa = [knowledge.test_question(r["image"], r["label"], home[r["label"]], qa_rng)
              for r in manifest if r["split"] == "test"]

    def dump(name, data, lines=False):
        with open(os.path.join(root, name), "w") as f:
            if lines:
                f.writelines(json.dumps(r) + "\n" for r in data)
            else:
                json.dump(data, f)
        return os.path.join(root, name)

    return {"root": root, "classes": dump("classes.json", names), "manifest": dump("manifest.jsonl", manifest, True),
            "clip_pairs": dump("clip_pairs.jsonl", clip_pairs, True), "captions": dump("captions.json", captions),
            "instructions": dump("instructions.json", instructions),
            "classification": dump("classification.json", classification),
            "class_weights": dump("class_weights.json", dict(zip(names, tail.tolist()))),
            "wikiqa": dump("wikiqa.jsonl", wikiqa, True), "homes": dump("homes.json", home), "images": count[0]}


def corpus(paths: dict) -> list[str]:
    """Every text of the world (for training its tokenizer)."""
    texts = [json.loads(line)["caption"] for line in open(paths["clip_pairs"])]
    for key in ("captions", "instructions", "classification"):
        texts += [turn["value"].replace("<image>\n", "") for r in json.load(open(paths[key]))
                  for turn in r["conversations"]]
    return texts
