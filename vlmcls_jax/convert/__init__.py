"""Hugging Face checkpoint converters: `load_hf(path_or_hub_id, dtype=...)` and `save_hf(model, out_dir)`."""

from vlmcls_jax.convert.hf import abstract_model, load_hf, model_class, save_hf
from vlmcls_jax.convert.hf_config import from_hf as config_from_hf
from vlmcls_jax.convert.hf_config import to_hf as config_to_hf
