"""Model FLOPs counted by hand, from the model's own (abstract) parameters and config, for the plan's
roofline and MFU (XLA's `cost_analysis` counts a `while` / `scan` body once, so a scanned model or a decode
loop is undercounted there; these counts are what the programs do, the usual MFU convention).

A matmul parameter (a `kernel`, a conv `patch_embedding`, a LoRA factor) costs 2 FLOPs per token it is
applied to; attention adds 4 T^2 D per layer (full square, as the MFU convention counts it); embedding
lookups, norms and elementwise work are not counted.  The model is read as a chain of components, each
applied to its own tokens:

    vision     the image encoder ("vision_tower" / "vision_model"): (S/p)^2 + 1 tokens per image
    connector  projector / Q-Former / language projection: the image tokens (LLaVA) or the queries (BLIP-2)
    llm        the language model's decoder: T tokens per row
    head       the output projection D x V: on every position (training) or the last one (inference)

Training: forward, plus gradients with respect to activations of every component after the earliest one that
trains (they carry the loss back to it), plus gradients with respect to the trained weights (each
component's forward share times the fraction of its matmul parameters that train).  Rematerialisation is not
counted (model FLOPs, not hardware FLOPs).  The Q-Former's cross-attention keys and values over the image
tokens are counted at the query count, an undercount of about 1% of a BLIP-2 step.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

COMPONENTS = ("vision", "connector", "llm", "head")
_TOP = {"vision_tower": "vision", "vision_model": "vision", "multi_modal_projector": "connector",
        "qformer": "connector", "language_projection": "connector", "language_model": "llm"}
_MATMUL_LEAVES = ("kernel", "patch_embedding", "lora_a", "lora_b")


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the counts need of a model: matmul parameters per component (and how many of them train)."""
    params: dict[str, int]        # component -> matmul parameters
    trained: dict[str, int]       # component -> of which trainable
    vision_tokens: int            # per image, class token included
    vision_width: int
    vision_layers: int
    image_tokens: int             # connector tokens per image
    width: int                    # decoder D
    layers: int                   # decoder L
    vocab: int


def component(path: tuple) -> str:
    names = [str(p) for p in path]
    if "lm_head" in names:
        return "head"
    return _TOP.get(names[0], "llm")


def model_shape(model: nnx.Module, trainable=None) -> Shape:
    """`model` abstract or concrete; `trainable`: an nnx filter of the parameters that train (None: none)."""
    params = {c: 0 for c in COMPONENTS}
    trained = {c: 0 for c in COMPONENTS}
    chosen = set()
    if trainable is not None:
        chosen = {path for path, _ in nnx.to_flat_state(nnx.state(model, trainable))}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if str(path[-1]) not in _MATMUL_LEAVES:
            continue
        size = 1
        for d in var.shape:
            size *= d
        c = component(path)
        params[c] += size
        trained[c] += size if path in chosen else 0
    cfg = model.config
    text = getattr(cfg, "text_config", cfg)
    vision = getattr(cfg, "vision_config", None)
    v_tokens = (vision.image_size // vision.patch_size) ** 2 + 1 if vision is not None else 0
    image_tokens = getattr(cfg, "num_query_tokens", None) or getattr(cfg, "num_image_tokens", 0)
    if not params["head"]:   # tied output head (OPT): the embedding table is applied as a matmul
        params["head"] = text.hidden_size * text.vocab_size
    return Shape(params, trained, v_tokens, vision.hidden_size if vision else 0,
                 vision.num_hidden_layers if vision else 0, int(image_tokens), text.hidden_size,
                 text.num_hidden_layers, text.vocab_size)


def forward_by_component(s: Shape, images: int, rows: int, tokens: int, head_positions: int) -> dict[str, float]:
    """Forward FLOPs of each component for `images` images and `rows` x `tokens` decoder tokens, the head
    applied at `head_positions` positions per row."""
    v = s.vision_tokens
    return {"vision": images * (2.0 * s.params["vision"] * v + 4.0 * v * v * s.vision_width * s.vision_layers),
            "connector": images * 2.0 * s.params["connector"] * s.image_tokens,
            "llm": rows * (2.0 * s.params["llm"] * tokens + 4.0 * tokens * tokens * s.width * s.layers),
            "head": rows * 2.0 * s.params["head"] * head_positions}


def train_step_flops(s: Shape, batch: int, tokens: int) -> float:
    """One optimizer call's model FLOPs on `batch` rows of `tokens` (one image each)."""
    fwd = forward_by_component(s, batch, batch, tokens, tokens)
    trains = [c for c in COMPONENTS if s.trained[c]]
    if not trains:
        return sum(fwd.values())
    first = COMPONENTS.index(trains[0])
    activation_grads = sum(fwd[c] for c in COMPONENTS[first + 1:])
    weight_grads = sum(fwd[c] * s.trained[c] / s.params[c] for c in trains)
    return sum(fwd.values()) + activation_grads + weight_grads


def prefill_flops(s: Shape, batch: int, tokens: int) -> float:
    """A prompt prefill (images encoded, the head on the last position only)."""
    return sum(forward_by_component(s, batch, batch, tokens, 1).values())


def decode_token_flops(s: Shape, batch: int, context: int) -> float:
    """One decode step of `batch` rows attending to `context` cached positions."""
    return batch * (2.0 * (s.params["llm"] + s.params["head"]) + 4.0 * context * s.width * s.layers)


def score_rows_flops(s: Shape, batch: int, rows: int, width: int, prefix: int, targets: int) -> float:
    """`inference.scoring._score_rows`: B x R rows of W tree tokens attending to a prefix of `prefix` cached
    positions and to each other, the head at `targets` positions per prompt."""
    n = batch * rows * width
    return (2.0 * s.params["llm"] * n + 4.0 * n * (prefix + width) * s.width * s.layers
            + batch * targets * 2.0 * s.params["head"])
