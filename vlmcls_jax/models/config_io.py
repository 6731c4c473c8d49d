"""Our model configs <-> JSON-able dicts (for checkpoints written in our own format).

    d = config_to_dict(cfg)   # {"type": "LlavaConfig", "vision_config": {"type": ...}, ...}
    cfg == config_from_dict(d)
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from vlmcls_jax import models

# Every config dataclass the package exports (each family's and its towers'), by class name.  LlavaNextConfig's
# image_grid_pinpoints (pairs) come back from JSON as lists of lists; its __post_init__ makes them tuples again.
CONFIG_TYPES = {c.__name__: c for c in vars(models).values()
                if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__name__.endswith("Config")}


def config_to_dict(cfg) -> dict:
    out = {"type": type(cfg).__name__}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif f.name in ("dtype", "param_dtype"):
            value = jnp.dtype(value).name
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def config_from_dict(d: dict, where: str = "config"):
    """Inverse of `config_to_dict`; unknown types or fields are errors naming them (`where` prefixes)."""
    if d.get("type") not in CONFIG_TYPES:
        raise ValueError(f"{where}.type={d.get('type')!r} is not one of {sorted(CONFIG_TYPES)}")
    cls = CONFIG_TYPES[d["type"]]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names - {"type"})
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown} for {cls.__name__}")
    kwargs = {}
    for key, value in d.items():
        if key == "type":
            continue
        if isinstance(value, dict) and "type" in value:
            value = config_from_dict(value, f"{where}.{key}")
        elif key in ("dtype", "param_dtype"):
            value = jnp.dtype(value)
        elif isinstance(value, list) and key == "vision_feature_layer":
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)
