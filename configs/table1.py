"""The study's Table 1 / Table 2 / Figure 2 on one dataset: CLIP zero-shot, the VLM by open- and closed-world
generation, and by probabilistic inference (optionally on label sets of size 100, 20, 5, 2).

The study's data/ folder (VLMClassifier repository) holds the manifests and class lists; image paths in the
manifests are relative to the folder that contains data/.

    python -m vlmcls_jax.main --config configs/table1.py:flowers --workdir runs/table1_flowers \\
        --config.data.manifest=VLMClassifier/data/flowers.jsonl \\
        --config.data.classes=VLMClassifier/data/flowers_classes.json --config.data.image_root=VLMClassifier
    # then, after one run per dataset, one table with a column per dataset:
    python -m vlmcls_jax.eval.tables runs/table1_* --out runs/table1

Compare with the study's Table 1 (LLaVA-1.5-7B vs CLIP ViT-L/14-336 on the same dataset).  Variants:
configs/table2.py (prompt wordings, label order, chain of thought, probabilistic inference) and
configs/figure2.py (label-set size).
"""

import ml_collections
from ml_collections.config_dict import placeholder

DATASETS = ("imagenet", "flowers", "cars", "caltech")


def get_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not one of {DATASETS}")
    c = ml_collections.ConfigDict()
    c.job = "eval"
    c.seed = 0
    c.experiments = ("clip", "open", "closed", "scoring")
    c.label_set_sizes = ()
    c.max_examples = 0                     # > 0: evaluate only the first N (smoke tests)
    c.mesh_shape = ()                      # e.g. (-1, 1, 1): split VLM batches over all devices (batch_size
                                           # must divide over them); () = one device per process
    # label: the name in tables; revision: a hub branch, tag or commit to pin (results.json records the commit)
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", label="",
                                             revision=placeholder(str)))
    # templates: "study" (the study's one template "A photo of a {}"), "single" or "imagenet80" (CLIP's ensemble)
    c.clip = ml_collections.ConfigDict(dict(checkpoint="openai/clip-vit-large-patch14-336", templates="study",
                                            label="", revision=placeholder(str)))
    # on_bad_image: "error" (stop at the first unreadable image, naming it) or "skip" (leave such images out,
    # listed in WORKDIR/skipped_images.jsonl and counted in results.json; accuracies are over the rest)
    c.data = ml_collections.ConfigDict(dict(name=dataset, manifest=f"data/{dataset}.jsonl",
                                            classes=f"data/{dataset}_classes.json", image_root=".",
                                            split="test", on_bad_image="error"))
    # wording: a key of data.prompts.QUESTION_WORDINGS; choice_order: "shuffled" (per image, by seed) or
    # "dataset" (the class list's order: the study's label-order ablation)
    c.generation = ml_collections.ConfigDict(dict(max_new_tokens=64, batch_size=8, wording="default",
                                                  chain_of_thought=False, choice_order="shuffled"))
    # The study fed images through llava-hf's processor (resize + centre crop, no padding); True pads to a
    # square first as LLaVA-1.5's training code does.
    c.pad_to_square = False
    # batch_size: images per prefill; cfg_alpha: the study's calibration alpha (eval.vlm_scoring; 1 = sum)
    c.scoring = ml_collections.ConfigDict(dict(batch_size=1, chunk_size=256, cfg_alpha=2.0))
    return c
