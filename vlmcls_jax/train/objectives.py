"""Training objectives: pure functions `objective(model, batch) -> (loss, metrics)`, chosen by
`config.objective`, so an ablation is a config change or a few lines in a notebook:

    objective = make_objective({"name": "text_generation", "label_smoothing": 0.1})
    objective = make_objective({"name": "weighted", "terms": {"text_generation": 1.0, "classification": 0.5}})
    objective = make_objective({"name": "weighted", "terms": [({"name": "text_generation",
                                                               "label_smoothing": 0.1}, 1.0)]})

Batches are dicts of arrays:
  text_generation  input_ids int[B, T], attention_mask int[B, T], loss_mask int[B, T], pixel_values?
  classification   input_ids, attention_mask, labels int[B], pixel_values?  (model: `heads.WithHead`)
  clip_contrastive input_ids, attention_mask, pixel_values  (model: `CLIPModel`)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from vlmcls_jax.train import losses

Objective = Callable[[nnx.Module, Mapping[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]


def _vlm_kwargs(batch) -> dict:
    return {"pixel_values": batch["pixel_values"]} if "pixel_values" in batch else {}


def text_generation(model, batch, *, label_smoothing: float = 0.0):
    """Next-token cross-entropy on answer tokens (`loss_mask`), as LLaVA trains."""
    model = getattr(model, "backbone", model)   # a WithHead model generates with its backbone
    logits, _ = model(batch["input_ids"], attention_mask=batch["attention_mask"], **_vlm_kwargs(batch))
    return losses.next_token_loss(logits, batch["input_ids"], batch["loss_mask"], label_smoothing)


def classification(model, batch, *, pool: str = "last", label_smoothing: float = 0.0):
    """Cross-entropy of a linear head on the backbone's pooled final hidden states."""
    out = model.backbone.decode(batch["input_ids"], attention_mask=batch["attention_mask"], **_vlm_kwargs(batch))
    features = losses.pool(out.hidden, batch["attention_mask"], pool)
    return losses.classification_loss(model.head(features), batch["labels"], label_smoothing)


def clip_contrastive(model, batch):
    """CLIP's symmetric InfoNCE over the batch's image/text pairs."""
    image = model.get_image_features(batch["pixel_values"])
    text = model.get_text_features(batch["input_ids"], batch["attention_mask"])
    return losses.clip_contrastive_loss(image, text, model.logit_scale[...])


OBJECTIVES: dict[str, Callable] = {
    "text_generation": text_generation,
    "classification": classification,
    "clip_contrastive": clip_contrastive,
}


def weighted(terms: Mapping[str, tuple[Objective, float]]) -> Objective:
    """sum_i w_i * loss_i; metrics of each term are reported under `name/...`."""
    def objective(model, batch):
        total, metrics = 0.0, {}
        for name, (fn, weight) in terms.items():
            loss, m = fn(model, batch)
            total = total + weight * loss
            metrics.update({f"{name}/{k}": v for k, v in m.items()})
        metrics["loss"] = total
        return total, metrics
    return objective


def make_objective(spec: str | Mapping[str, Any]) -> Objective:
    """From a name or a config dict {"name": ..., **kwargs}.  "weighted" takes {"terms": {name: weight}}
    or {"terms": [(name_or_spec, weight), ...]} (specs carry kwargs; a repeated name gets a _2, _3 suffix
    in the metrics).  Unknown names are errors listing the known ones."""
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", None)
    if name == "weighted":
        raw = spec.pop("terms")
        terms = {}
        for term, weight in (raw.items() if isinstance(raw, Mapping) else raw):
            key = sub = term if isinstance(term, str) else term["name"]
            n = 1
            while key in terms:
                n += 1
                key = f"{sub}_{n}"
            terms[key] = (make_objective(term), float(weight))
        return weighted(terms)
    if name not in OBJECTIVES:
        raise ValueError(f"config.objective name {name!r} is not one of {sorted(OBJECTIVES) + ['weighted']}")
    return functools.partial(OBJECTIVES[name], **spec)
