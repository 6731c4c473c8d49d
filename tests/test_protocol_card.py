"""docs/protocol.md, the protocol card, held to the study's code and to ours.

The study's side: every `path:line` it cites in the study's repository (yuhui-zh15/VLMClassifier at d069792)
exists there, and the code quoted right after a citation (backticks; `...` separates pieces) is on the cited
lines, or in the cited notebook cell.  The cited lines and cells are read from
tests/data/study_cited_lines.json (extracted from the study's git repository, MIT), so every clone checks
them; where the study's repository is at hand (`VLMCLASSIFIER_GIT`, a git directory) the file is compared
with it.  A new citation needs a refresh:

    python tests/test_protocol_card.py /path/to/VLMClassifier/.git     # rewrites tests/data/study_cited_lines.json

Our side: every file of ours the card cites exists, the cited line is in it and the name quoted after it is
defined or used in that file (line numbers move as others edit; names do not).  And the rows marked `same`
hold, each checked against the study's string or number quoted here with its file:line.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

from vlmcls_jax import defaults

ROOT = pathlib.Path(__file__).resolve().parents[1]
CARD_PATH = ROOT / "docs" / "protocol.md"
SNAPSHOT = ROOT / "tests" / "data" / "study_cited_lines.json"
STUDY_COMMIT = "d069792"
# A git directory of the study's repository, where there is one (the snapshot was extracted from this one)
STUDY_GIT = pathlib.Path(os.environ.get("VLMCLASSIFIER_GIT", "/work/.mirror/yuhui-zh15+VLMClassifier/repo"))

STUDY_DIRS = ("main_results", "inference_analysis", "feature_analysis", "imagewikiqa", "training_analysis",
              "data_analysis")
# A study citation: a path under the study's folders, with `:LINE[-LINE]` or ` cell K`; or a bare `:LINE`
# continuing the last path of the row ("model_vqa.py:68-73 the prompt, :80-82 ...").
STUDY_REF = re.compile(r"(?P<path>(?:{})/[\w./-]+?\.(?:py|sh|yaml|ipynb))(?::(?P<a>\d+)(?:-(?P<b>\d+))?"
                       r"| cell (?P<cell>\d+))?|(?<=[ (]):(?P<ca>\d+)(?:-(?P<cb>\d+))?".format("|".join(STUDY_DIRS)))
OUR_REF = re.compile(r"(?<![\w/])(?P<path>(?:vlmcls_jax/|configs/|benchmarks/)?[\w/]+\.py):(?P<a>\d+)"
                     r"(?:-(?P<b>\d+))?")
def flat(code: str) -> str:
    """Whitespace as the study's formatter may break a call over lines: `f(\n    a, b\n)` reads `f(a, b)`."""
    return re.sub(r"\s*([)\]}])", r"\1", re.sub(r"([(\[{])\s*", r"\1", " ".join(code.split())))


QUOTE = re.compile(r"\s*(?:\(also [^)]*\)\s*)?`(?P<code>[^`]+)`")


def card_rows() -> list[str]:
    return [line for line in CARD_PATH.read_text().splitlines() if re.match(r"\| \d+ \|", line)]


def study_citations(rows=None):
    """[(row number, path, (first, last) or None, cell or None, quoted code or None)] of the card's study refs."""
    out = []
    for row in rows if rows is not None else card_rows():
        number, last = int(row.split("|")[1]), None
        for m in STUDY_REF.finditer(row):
            path = m["path"] or last
            if path is None:
                continue
            last = path
            first = m["a"] or m["ca"]
            lines = (int(first), int(m["b"] or m["cb"] or first)) if first else None
            cell = int(m["cell"]) if m["cell"] else None
            quote = QUOTE.match(row, m.end())
            out.append((number, path, lines, cell, quote["code"] if quote and (lines or cell is not None) else None))
    return out


def extract(git_dir: str | pathlib.Path, rows=None) -> dict:
    """The cited lines and notebook cells, read from the study's git repository (`git show COMMIT:path`)."""
    def show(path):
        done = subprocess.run(["git", "-C", str(git_dir), "show", f"{STUDY_COMMIT}:{path}"], capture_output=True,
                              text=True)
        if done.returncode:
            raise FileNotFoundError(f"{path} is not in the study's repository at {STUDY_COMMIT}: {done.stderr}")
        return done.stdout

    files, texts = {}, {}
    for _, path, lines, cell, _ in study_citations(rows):
        text = texts.setdefault(path, show(path))
        entry = files.setdefault(path, {"lines": len(text.splitlines()), "cited": {}})
        if lines:
            all_lines = text.splitlines()
            for n in range(lines[0], min(lines[1], len(all_lines)) + 1):
                entry["cited"][str(n)] = all_lines[n - 1]
        if cell is not None:
            cells = json.loads(text)["cells"]
            entry["cells"] = len(cells)
            if cell < len(cells):
                entry.setdefault("cited_cells", {})[str(cell)] = "".join(cells[cell]["source"])
    return {"repository": "yuhui-zh15/VLMClassifier", "commit": STUDY_COMMIT, "license": "MIT",
            "files": {k: files[k] for k in sorted(files)}}


def test_every_study_citation_exists_and_holds_its_quoted_code():
    snapshot = json.loads(SNAPSHOT.read_text())
    citations = study_citations()
    assert len(citations) > 100
    quoted = 0
    for number, path, lines, cell, code in citations:
        where = f"docs/protocol.md row {number} cites {path}"
        assert path in snapshot["files"], f"{where}: not in {SNAPSHOT.name} (refresh it: see this file's docstring)"
        entry = snapshot["files"][path]
        if lines:
            assert lines[0] <= lines[1] <= entry["lines"], f"{where}:{lines}; the file has {entry['lines']} lines"
            assert all(str(n) in entry["cited"] for n in range(lines[0], lines[1] + 1)), f"{where}: refresh"
            text = "\n".join(entry["cited"][str(n)] for n in range(lines[0], lines[1] + 1))
        elif cell is not None:
            assert cell < entry.get("cells", 0), f"{where} cell {cell}; it has {entry.get('cells')} cells"
            text = entry["cited_cells"][str(cell)]
        else:
            continue
        if code:
            for piece in (p.strip() for p in code.split("...")):
                assert flat(piece) in flat(text), f"{where}:{lines or ('cell', cell)}: `{piece}` is not there:\n{text}"
            quoted += 1
    assert quoted > 50


def test_the_snapshot_is_the_studys_repository():
    """Where the study's git repository is at hand, the shipped lines are what it says (else: the snapshot)."""
    snapshot = json.loads(SNAPSHOT.read_text())
    assert snapshot["commit"] == STUDY_COMMIT and snapshot["license"] == "MIT"
    if STUDY_GIT.exists():
        assert extract(STUDY_GIT) == snapshot, f"{SNAPSHOT} is stale: python {__file__} {STUDY_GIT}"
    else:   # every citation is covered (the card's rows alone, without the repository)
        cited = {path for _, path, *_ in study_citations()}
        assert cited == set(snapshot["files"])


def test_every_reference_into_our_code_resolves():
    ours = sorted(str(p.relative_to(ROOT)) for d in ("vlmcls_jax", "configs", "benchmarks")
                  for p in (ROOT / d).rglob("*.py"))
    checked = named = 0
    for row in card_rows():
        number = int(row.split("|")[1])
        for m in OUR_REF.finditer(row):
            path = m["path"]
            if path.startswith(STUDY_DIRS):   # the study's: the test above
                continue
            matches = [f for f in ours if f == path or f.endswith("/" + path)]
            assert len(matches) == 1, f"docs/protocol.md row {number} cites {path}: matches {matches}"
            text = (ROOT / matches[0]).read_text()
            n_lines = len(text.splitlines())
            assert int(m["b"] or m["a"]) <= n_lines, f"row {number} cites {path}:{m['a']}; it has {n_lines} lines"
            quote = QUOTE.match(row, m.end())
            if quote:
                name = re.match(r"[A-Za-z_][\w.]*", quote["code"])
                if name:
                    assert name[0].split(".")[0] in text, f"row {number}: `{name[0]}` is not in {matches[0]}"
                    named += 1
            checked += 1
    assert checked > 60 and named > 40, (checked, named)


def test_rows_are_numbered_once_and_none_is_in_flight():
    card = CARD_PATH.read_text()
    numbers = [int(row.split("|")[1]) for row in card_rows()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert "branch " not in card and "(item " not in card   # issue 17's in-flight marks are all resolved
    for option in ('`sampling="study"`', 'subset="study"', "--counting study", 'name_tokens="study"',
                   'protocol="model_vqa"', "`instructblip_bare`", "`llava_v1_human`", "paper_batch"):
        assert option in card, option


def test_same_rows_hold_against_the_studys_strings():
    from vlmcls_jax.data.prompt_formats import PROMPT_FORMATS, scoring_prefix
    from vlmcls_jax.data.prompts import QUESTION_WORDINGS, closed_world_question, llava_prompt
    from vlmcls_jax.eval.answer_parser import ASSISTANT_PREFIX, MAX_NEW_TOKENS
    from vlmcls_jax.eval.clip_templates import TEMPLATE_SETS

    q = "What type of object is in this photo?"               # main_results/main.py:81
    assert QUESTION_WORDINGS["default"] == q
    assert llava_prompt(q) == f"USER: <image>\n{q}\nASSISTANT:"           # main_results/main.py:134
    assert PROMPT_FORMATS["blip2"](q, "") == f"Question: {q} Answer:"    # main_results/main.py:124
    assert PROMPT_FORMATS["instructblip"](q, "") == f"Question: {q} Answer:"   # main.py:121 "blip" in model_id
    assert PROMPT_FORMATS["llava_next_mistral"](q, "") == f"[INST] <image>\n{q}[/INST]"   # main_results/main.py:113
    assert closed_world_question(q, ["a", "b"]) == f"{q} Choose one from \"a, b\"."   # main_results/main.py:104
    assert TEMPLATE_SETS["study"] == ("A photo of a {}",)        # main_results/main.py:204 f"A photo of a {cls}"
    # inference_analysis/main.py:170 and :162
    assert llava_prompt(q, scoring_prefix("llava_hf")) == (
        "USER: <image>\nWhat type of object is in this photo?\nASSISTANT: The photo features a")
    assert PROMPT_FORMATS["blip2"](q, scoring_prefix("blip2")) == (
        "Question: What type of object is in this photo? Answer: A")
    # imagewikiqa/main.py:71 and :77
    assert llava_prompt("Q", ASSISTANT_PREFIX) == "USER: <image>\nQ\nASSISTANT: Let's think step by step."
    assert MAX_NEW_TOKENS == 1024
    # main_results/main.py:146 `max_new_tokens=64 if not chain_of_thought else 512` (the jobs' defaults)
    from vlmcls_jax.eval.vlm_generation import study_max_new_tokens
    assert defaults.eval_config().generation.max_new_tokens == 0          # 0: the study's value:
    assert (study_max_new_tokens(False), study_max_new_tokens(True)) == (64, 512)
    # main_results/main.py:319 `@click.option("--split", default="valid")` for ImageNet; its scripts: test
    assert defaults.eval_config("imagenet").data.split == "valid"
    assert defaults.eval_config("flowers").data.split == "test"
    # feature_analysis/probe.py:86 `lr=0.001`, :89 `bsz = 512`, :37 `--n_epochs` 500; probe.sh ImageNet 100
    for dataset, epochs in (("flowers", 500), ("imagenet", 100)):
        p = defaults.probe_config(dataset).probe
        assert (p.learning_rate, p.batch_size, p.epochs) == (1e-3, 512, epochs)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} STUDY_GIT_DIR   (yuhui-zh15/VLMClassifier with {STUDY_COMMIT})")
    SNAPSHOT.write_text(json.dumps(extract(sys.argv[1]), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {SNAPSHOT}")
