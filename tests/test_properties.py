"""Property-based tests (hypothesis): prompt building, conversation loss masks, answer parsing, manifest
parsing and image decoding hold their invariants on generated inputs, not only on the hand-picked ones.

The tokenizer properties use the real Llama-2 tokenizer from tests/data/tokenizers.  Example counts are modest (the suite runs on 2 cores); hypothesis keeps
its database of failing examples in .hypothesis/ (ignored by git).
"""

import io
import json
import random
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlmcls_jax.data.conversation import TEMPLATES, tokenize_conversation
from vlmcls_jax.data.preprocess import load_image
from vlmcls_jax.data.prompts import IMAGE_TOKEN, llava_prompt, tokenize_prompts
from vlmcls_jax.data.sources import ClassList, read_manifest
from vlmcls_jax.eval.answer_parser import HOWS, parse_choice

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text a user could put in a question, class name or answer: any printable characters but '<' (which could
# spell a special token such as `<image>` or `</s>`; placeholders are tested on purpose below).
words = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs"), exclude_characters="<"),
                min_size=1, max_size=30)


@SETTINGS
@given(questions=st.lists(words, min_size=1, max_size=4), n_image=st.integers(0, 5))
def test_prompts_expand_the_image_once_and_pad_on_the_left(llava_tokenizer, questions, n_image):
    prompts = [llava_prompt(q) for q in questions]
    batch = tokenize_prompts(llava_tokenizer, prompts, n_image)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    image_id = llava_tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    for row, prompt in zip(range(len(prompts)), prompts):
        real = ids[row][mask[row] == 1]
        assert (real == image_id).sum() == n_image                            # exactly the image's features
        assert np.all(np.diff(mask[row]) >= 0)                                # padding only on the left
        assert np.all(ids[row][mask[row] == 0] == llava_tokenizer.pad_token_id)
        alone = tokenize_prompts(llava_tokenizer, [prompt], n_image)["input_ids"][0]
        assert real.tolist() == alone.tolist()                                # batching changes nothing
    assert mask.sum(1).max() == ids.shape[1]                                  # no all-padding column


@SETTINGS
@given(question=words, answers=st.lists(words.filter(lambda a: a.strip()), min_size=1, max_size=3),
       template=st.sampled_from(sorted(TEMPLATES)))
def test_loss_mask_covers_exactly_the_answers(llava_tokenizer, question, answers, template):
    """Every supervised token lies inside an assistant answer (+ its `</s>`), and every non-space character
    of every answer lies inside a supervised token."""
    turns = []
    for i, answer in enumerate(answers):
        turns += [{"from": "human", "value": (f"{IMAGE_TOKEN}\n" if i == 0 else "") + question},
                  {"from": "gpt", "value": answer}]
    out = tokenize_conversation(llava_tokenizer, {"id": "x", "image": "a.png", "conversations": turns}, 3, template)
    ids, loss = out["input_ids"], out["loss_mask"]
    assert len(ids) == len(loss) and loss.any()
    supervised = llava_tokenizer.decode(ids[loss == 1])
    squeeze = lambda text: "".join(text.split())
    assert squeeze(supervised) == squeeze("".join(a + TEMPLATES[template].sep2 for a in answers))


@SETTINGS
@given(response=st.text(max_size=80), n_options=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_parse_choice_always_picks_an_offered_letter_deterministically(response, n_options, seed):
    options = {chr(ord("A") + i): f"option {i}" for i in range(n_options)}
    letter, how = parse_choice(response, options, random.Random(seed))
    assert letter in options and how in HOWS
    assert parse_choice(response, options, random.Random(seed)) == (letter, how)


@SETTINGS
@given(filler=st.text(alphabet=string.ascii_lowercase + " ,.", max_size=40), pick=st.integers(0, 3))
def test_a_bracketed_letter_decides(filler, pick):
    options = {letter: f"choice {letter.lower()}" for letter in "ABCD"}
    letter = "ABCD"[pick]
    assert parse_choice(f"{filler} The answer is ({letter}). {filler}", options, random.Random(0)) == \
        (letter, "bracket")


segment = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
rel_paths = st.lists(segment, min_size=1, max_size=3).map(lambda parts: "/".join(parts) + ".jpg")
BAD_ROWS = {   # a row -> the words its error must contain
    "escapes": ({"image": "../outside.jpg", "label": "cat"}, ".."),
    "absolute": ({"image": "/etc/passwd", "label": "cat"}, "absolute"),
    "unknown label": ({"image": "new.jpg", "label": "unicorn"}, "unknown label"),
    "no label": ({"image": "new2.jpg"}, "missing field 'label'"),
    "not an object": ([1, 2], "expected a JSON object"),
}


@SETTINGS
@given(paths=st.lists(rel_paths, min_size=1, max_size=12, unique_by=lambda p: p.lower()),
       labels=st.data(), bad=st.sampled_from(sorted(BAD_ROWS) + ["duplicate", None]), where=st.data())
def test_manifests_parse_or_fail_naming_the_line(tmp_path_factory, paths, labels, bad, where):
    classes = ClassList(("cat", "dog", "hot dog"))
    rows = [{"image": p, "label": labels.draw(st.sampled_from(classes.names))} for p in paths]
    if bad is not None:
        row, words_ = ({"image": paths[0], "label": "cat"}, "already listed") if bad == "duplicate" else BAD_ROWS[bad]
        at = where.draw(st.integers(1 if bad == "duplicate" else 0, len(rows)))
        rows.insert(at, row)
    folder = tmp_path_factory.mktemp("manifest")
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if bad is None:
        examples = read_manifest(manifest, folder, classes)
        assert [e.id for e in examples] == paths
        assert [classes.names[e.label] for e in examples] == [r["label"] for r in rows]
        assert all(e.image.startswith(str(folder)) for e in examples)
    else:
        with pytest.raises(ValueError, match=f"{manifest}:{at + 1}: .*{words_}"):
            read_manifest(manifest, folder, classes)


@SETTINGS
@given(data=st.binary(max_size=300), magic=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a"]))
def test_arbitrary_bytes_decode_or_fail_with_a_named_error(tmp_path_factory, data, magic):
    path = tmp_path_factory.mktemp("fuzz") / "image"
    path.write_bytes(magic + data)
    try:
        image = load_image(path)
    except ValueError as e:
        assert str(path) in str(e)
    else:
        assert image.mode == "RGB"


@SETTINGS
@given(mode=st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]),
       width=st.integers(1, 40), height=st.integers(1, 40), fmt=st.sampled_from(["PNG", "TIFF", "WEBP"]),
       seed=st.integers(0, 1000))
def test_any_mode_and_size_decodes_to_rgb_of_the_same_size(tmp_path_factory, mode, width, height, fmt, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8), "RGB").convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):
        assume(False)                       # this format cannot hold this mode; nothing to decode
    path = tmp_path_factory.mktemp("modes") / f"image.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (width, height)
