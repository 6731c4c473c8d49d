"""The study's Table 5: ImageWikiQA accuracy (2000 four-way questions about ImageNet objects that need
knowledge of what the object is), LLaVA-1.5 as released vs after fine-tuning with classification data.
The study's protocol (VLMClassifier imagewikiqa/main.py, eval.ipynb): the question text verbatim, "Let's
think step by step." in the assistant turn, greedy, up to 1024 new tokens, MMMU's answer parser with a
seeded random fallback.

    # the released model
    python -m vlmcls_jax.main --config configs/table5_imagewikiqa.py --workdir runs/iwqa_base \\
        --config.data.questions=VLMClassifier/data/imagewikiqa.jsonl --config.data.image_root=/data/imagewikiqa
    # a fine-tuned one (configs/finetune_mixture.py), with the gain over the first run beside the study's +11.8
    python -m vlmcls_jax.main --config configs/table5_imagewikiqa.py --workdir runs/iwqa_mix \\
        --config.model.checkpoint=runs/mixture/hf_export --config.baseline=runs/iwqa_base \\
        --config.data.questions=VLMClassifier/data/imagewikiqa.jsonl --config.data.image_root=/data/imagewikiqa
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "imagewikiqa"
    c.seed = 1234                          # the study's random.seed for the parser's fallback
    c.max_examples = 0                     # > 0: the first N questions (smoke tests)
    c.mesh_shape = ()                      # e.g. (-1, 1, 1): split batches over this process's devices
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", label="",
                                             revision=placeholder(str)))
    c.data = ml_collections.ConfigDict(dict(questions="data/imagewikiqa.jsonl", image_root=".",
                                            require_images=False))   # True: a missing image is an error
    c.generation = ml_collections.ConfigDict(dict(chain_of_thought=True, max_new_tokens=1024, batch_size=8))
    c.pad_to_square = False                # the study used llava-hf's processor (no padding)
    c.baseline = ""                        # another run's workdir: report the gain over it
    return c
