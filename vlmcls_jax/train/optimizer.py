"""What trains, and how: regex-selected parameter groups, each with its own learning rate, AdamW with
warmup + cosine, global-norm clipping, gradient accumulation and a weight-decay mask.

Parameters are addressed by their path joined with "/", e.g. `multi_modal_projector/linear_1/kernel`,
`language_model/model/layers/3/self_attn/q_proj/lora_b`.  A parameter that no group's regex matches is
frozen: it is split off before differentiation, so it gets no gradient, no optimizer state, and stays
bit-identical (cheaper than `optax.multi_transform` + `set_to_zero`, which still computes its gradient).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import jax
import optax
from flax import nnx

# Named selections used by configs; each is a list of regexes over parameter paths.
TRAINABLE_PRESETS: dict[str, tuple[str, ...]] = {
    "projector": (r"(^|/)multi_modal_projector/",),
    # BLIP-2 / InstructBLIP: the Q-Former with its query tokens and the projection into the LLM (the study's
    # BLIP-2 fine-tuning: vision encoder and OPT frozen)
    "qformer": (r"^qformer/", r"^query_tokens$", r"^language_projection/"),
    "lora": (r"/lora_[ab]$",),
    "llm": (r"(^|/)language_model/",),
    "vision": (r"(^|/)vision_tower/", r"(^|/)vision_model/"),
    "text": (r"(^|/)text_model/",),
    "head": (r"^head/",),
    "all": (r".*",),
}


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """Parameters matching any of `patterns` (or the presets they name) train with `learning_rate`."""
    name: str
    patterns: tuple[str, ...]
    learning_rate: float

    def regexes(self) -> list[re.Pattern]:
        out = []
        for p in self.patterns:
            out.extend(re.compile(r) for r in TRAINABLE_PRESETS.get(p, (p,)))
        return out


def path_str(path: Sequence) -> str:
    return "/".join(str(p) for p in path)


def group_of(path: Sequence, groups: Sequence[ParamGroup]) -> str | None:
    """The first group whose regexes match `path`, or None (frozen)."""
    name = path_str(path)
    for group in groups:
        if any(r.search(name) for r in group.regexes()):
            return group.name
    return None


def trainable_filter(groups: Sequence[ParamGroup]):
    """An NNX filter selecting parameters that some group trains."""
    return lambda path, value: isinstance(value, nnx.Param) and group_of(path, groups) is not None


def check_groups(state: nnx.State, groups: Sequence[ParamGroup]) -> dict[str, int]:
    """Parameter counts per group; raises if a group matches nothing (a typo'd regex must not silently
    freeze everything)."""
    counts = {g.name: 0 for g in groups}
    for path, var in nnx.to_flat_state(state):
        if not isinstance(var, nnx.Param):
            continue
        name = group_of(path, groups)
        if name is not None:
            counts[name] += int(var[...].size)
    empty = [n for n, c in counts.items() if c == 0]
    if empty:
        raise ValueError(f"trainable groups {empty} match no parameter (patterns: "
                         f"{[g.patterns for g in groups if g.name in empty]})")
    return counts


def warmup_cosine(learning_rate: float, total_steps: int, warmup_ratio: float = 0.03,
                  warmup_steps: int = 0) -> optax.Schedule:
    """Linear warmup from 0 over ceil(`warmup_ratio` x steps) steps (or `warmup_steps` when > 0, as LAVIS's
    `warmup_steps`), then cosine decay to 0: transformers' `get_cosine_schedule_with_warmup`, which LLaVA's
    training uses.  No warmup starts at the peak."""
    warmup = warmup_steps or math.ceil(total_steps * warmup_ratio)
    if warmup == 0:
        return optax.cosine_decay_schedule(learning_rate, max(total_steps, 1))
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, max(total_steps, warmup + 1), 0.0)


def decay_mask(params):
    """Weight decay on matrices (ndim >= 2) only: not on norms, biases, scalars."""
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(params: nnx.State, groups: Sequence[ParamGroup], *, total_steps: int, warmup_ratio: float = 0.03,
                   warmup_steps: int = 0, weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8, max_grad_norm: float | None = 1.0, accumulate_steps: int = 1) -> optax.GradientTransformation:
    """AdamW per group (its own warmup-cosine schedule), after global-norm clipping over all trainables.

    params: the trainable state (its paths decide each parameter's group).  With accumulate_steps > 1 the
    update is applied every k calls with the mean gradient (optax.MultiSteps); `total_steps` counts
    optimizer updates.
    """
    schedule = lambda lr: warmup_cosine(lr, total_steps, warmup_ratio, warmup_steps)
    transforms = {g.name: optax.adamw(schedule(g.learning_rate), b1=b1, b2=b2,
                                      eps=eps, weight_decay=weight_decay, mask=decay_mask) for g in groups}
    labels = lambda tree: jax.tree_util.tree_map_with_path(lambda kp, _: group_of(keypath_names(kp), groups), tree)
    tx = optax.multi_transform(transforms, labels)
    if max_grad_norm:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    if accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate_steps)
    return tx


def keypath_names(keypath) -> tuple:
    """A jax key path over an nnx.State (or a pure dict) -> our parameter path (drops the `.value` leaf)."""
    names = []
    for k in keypath:
        if isinstance(k, jax.tree_util.GetAttrKey):
            continue  # the Variable's `value`
        names.append(getattr(k, "key", getattr(k, "idx", k)))
    return tuple(names)
