"""The study's Table 2 on one dataset: what inference changes buy.  One variant per run:

  wording:name_item, wording:identify, wording:main_object   other question wordings (open world)
  order                                                      closed world, choices in the class list's order
  cot                                                        chain of thought, closed world (max 512 tokens)
  scoring                                                    probabilistic inference (sum / avg / cfg)

    python -m vlmcls_jax.main --config configs/table2.py:flowers,cot --workdir runs/table2_flowers_cot \\
        --config.data.image_root=DATA     # laid out by vlmcls_jax.data.prepare (configs/table1.py)
    python -m vlmcls_jax.eval.tables runs/table2_* --out runs/table2

The study's probabilistic inference used the first 1000 images of its seed-1234 shuffle of the split
(inference_analysis/main.py:141-144): config.scoring.subset="study" (the default) picks exactly those;
--config.scoring.subset=all scores every image.  Compare with the study's Table 2 (LLaVA-1.5-7B).
"""

import ml_collections

from vlmcls_jax import defaults

VARIANTS = ("wording:name_item", "wording:identify", "wording:main_object", "order", "cot", "scoring")


def get_config(arg: str = "flowers,cot") -> ml_collections.ConfigDict:
    dataset, _, variant = arg.partition(",")
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} (in {arg!r}) is not one of {VARIANTS}")
    c = defaults.eval_config(dataset)     # configs/table1.py
    if variant.startswith("wording:"):
        c.experiments = ("open",)
        c.generation.wording = variant.split(":", 1)[1]
    elif variant == "order":
        c.experiments = ("closed",)
        c.generation.choice_order = "dataset"
    elif variant == "cot":
        c.experiments = ("closed",)
        c.generation.chain_of_thought = True
        c.generation.max_new_tokens = 512     # the study's limit with chain of thought
    else:
        c.experiments = ("scoring",)
    return c
