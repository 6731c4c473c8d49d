"""Hugging Face checkpoints <-> our Flax NNX models, both directions.

    model = load_hf("llava-hf/llava-1.5-7b-hf", dtype=jnp.bfloat16)   # or a local folder
    save_hf(model, "out/")            # config.json + safetensors that transformers loads

Our module names mirror transformers', so one naming rule maps every parameter path to its HF key:
`a/b/kernel` <-> `a.b.weight` (transposed; a 4-d conv kernel [kh, kw, in, out] <-> torch's [out, in, kh, kw]),
`scale`/`embedding` <-> `weight`, `patch_embedding` <-> `patch_embedding.weight` (a conv kernel too).  The
table is built from the model's own (abstract) state, so a parameter can never be forgotten: every model
parameter must be found in the checkpoint and every checkpoint tensor must land in the model (known
non-parameter buffers aside).  A model with scanned layers (`models/scan.py`) stores each decoder parameter
stacked [L, ...]; it still reads and writes transformers' per-layer keys (`layers.{i}.`), slice by slice.

Weights are read with safetensors only (never pickle), one tensor at a time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open

from vlmcls_jax.convert import companions, hf_config, safetensors_stream
from vlmcls_jax.convert.families import family_of
from vlmcls_jax.models.scan import LAYER_AXIS
from vlmcls_jax.train.lora import LoRA

# Non-parameter buffers some checkpoints carry; transformers ignores them too.
_IGNORED_KEYS = re.compile(r"(\.position_ids|\.rotary_emb\.inv_freq)$")


def model_class(cfg) -> type[nnx.Module]:
    """Our Flax model class for a config (its family's record, `convert/families.py`)."""
    return family_of(cfg).model


def abstract_model(cfg) -> nnx.Module:
    """The model with `ShapeDtypeStruct`s instead of arrays (no memory, no compute).

    Built with rngs=None (every parameter from one fixed key): under tracing each `Rngs` call costs time
    proportional to everything traced so far (nnx inspects the new count tracer), quadratic in the number of
    parameters: 71 s instead of 8 s for BLIP-2 OPT-2.7B's 1,247 tensors.  Shapes and metadata are the same."""
    return nnx.eval_shape(lambda: model_class(cfg)(cfg, rngs=None))


# ---------------------------------------------------------------------------------------------- naming


def _to_torch(a: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "patch_embedding" or (leaf == "kernel" and a.ndim == 4):   # conv [kh, kw, in, out] -> [out, in, kh, kw]
        return a.transpose(3, 2, 0, 1)
    return a.T if leaf == "kernel" else a


def _from_torch(a: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "patch_embedding" or (leaf == "kernel" and a.ndim == 4):
        return a.transpose(2, 3, 1, 0)
    return a.T if leaf == "kernel" else a


def hf_key(path: tuple) -> str:
    """Our parameter path, e.g. ('vision_tower', 'encoder', 'layers', 0, 'mlp', 'fc1', 'kernel') -> HF key."""
    *parents, leaf = (str(p) for p in path)
    if leaf in ("kernel", "scale", "embedding"):
        leaf = "weight"
    elif leaf == "patch_embedding":
        leaf = "patch_embedding.weight"
    return ".".join(parents + [leaf])


def canonical_key(key: str, cfg) -> str:
    """Any accepted layout of a checkpoint key -> the transformers-5 file layout (the family's `key_renames`)."""
    return family_of(cfg).canonical_key(key)


def per_layer_paths(path: tuple, var: nnx.Variable) -> list[tuple] | None:
    """A stacked parameter of scanned layers -> the path of each layer's slice ('layers', i, ...); else None."""
    axes = var.get_metadata().get("logical_axes") or ()
    if not axes or axes[0] != LAYER_AXIS:
        return None
    j = path.index("layers")
    return [path[:j + 1] + (i,) + path[j + 1:] for i in range(var.shape[0])]


def _key_table(state: nnx.State) -> dict[str, tuple[tuple, nnx.Variable, int | None]]:
    """HF key -> (our path, variable, layer index of a stacked parameter's slice or None)."""
    table = {}
    for path, var in nnx.to_flat_state(state):
        slices = per_layer_paths(path, var)
        if slices is None:
            table[hf_key(path)] = (path, var, None)
        else:
            table.update({hf_key(layer_path): (path, var, i) for i, layer_path in enumerate(slices)})
    return table


# ---------------------------------------------------------------------------------------------- loading


def resolve_checkpoint(path_or_hub_id: str, revision: str | None = None) -> str:
    """A local folder as is; otherwise a hub id, downloaded (config, tokenizer, safetensors only)."""
    if not path_or_hub_id:
        raise ValueError("no checkpoint given (an empty folder or hub id)")
    if os.path.isdir(path_or_hub_id):
        companions.check_hf_folder(path_or_hub_id)
        return path_or_hub_id
    if os.path.exists(path_or_hub_id):
        raise ValueError(f"{path_or_hub_id} is a file; pass the checkpoint folder holding config.json")
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(path_or_hub_id, revision=revision,
                                 allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"])
    except (OSError, ValueError) as e:
        # huggingface_hub's errors: offline, no such repository or revision, gated (OSErrors); a string that is
        # no hub id either, e.g. a folder that does not exist (HFValidationError, a ValueError)
        asked = f"{path_or_hub_id!r}" + (f" (revision {revision})" if revision else "")
        raise ValueError(f"checkpoint {asked} is no local folder, and the Hugging Face hub did not give it: "
                         f"{type(e).__name__}: {str(e).rstrip('. ')}. Pass a local checkpoint folder (e.g. "
                         "--config.model.checkpoint=DIR), or check the id, the network and, for a gated model, your "
                         "hub login") from e


def checkpoint_provenance(path_or_hub_id: str, revision: str | None, folder: str) -> dict:
    """What a run records about the weights it read: the id or path asked for, the revision asked for (None:
    the default branch), the folder read and, for a hub download, the commit it resolved to (the hub cache
    names each snapshot folder `.../snapshots/<commit>`), so a rerun can pin exactly the same files."""
    folder = os.path.abspath(folder)
    name, parent = os.path.basename(folder), os.path.basename(os.path.dirname(folder))
    commit = name if parent == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", name) else None
    return {"checkpoint": path_or_hub_id, "revision": revision, "folder": folder, "commit": commit}


def safetensors_files(checkpoint_dir: str) -> list[str]:
    """The checkpoint's safetensors files (single file, or shards listed by the index)."""
    index = os.path.join(checkpoint_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            try:
                weight_map = json.load(f)["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{index}: not a safetensors index with a 'weight_map' ({e})") from e
        return [os.path.join(checkpoint_dir, name) for name in sorted(set(weight_map.values()))]
    files = sorted(f for f in os.listdir(checkpoint_dir) if f.endswith(".safetensors"))
    if files:
        return [os.path.join(checkpoint_dir, f) for f in files]
    if any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in os.listdir(checkpoint_dir)):
        raise ValueError(f"{checkpoint_dir} has only pickle weights (.bin/.pt), which we never load. Convert them "
                         "once with transformers (`from_pretrained(...).save_pretrained(dir, "
                         "safe_serialization=True)`) or use the hub's safetensors revision (refs/pr/...).")
    raise ValueError(f"{checkpoint_dir} holds no *.safetensors weights")


def iter_tensors(files: list[str]) -> Iterator[tuple[str, str, np.ndarray]]:
    """Yields (file, key, numpy array) one tensor at a time.

    Each tensor is read through its own `safe_open`: the file is memory-mapped while open, and the pages a
    read touches count as this process's resident memory until it is closed, so one open per shard would
    add up to a whole shard (often 5 GB) to the peak on top of the model being built."""
    for file in files:
        with safe_open(file, framework="numpy") as f:
            keys = list(f.keys())
        for key in keys:
            with safe_open(file, framework="numpy") as f:
                array = f.get_tensor(key)
            yield file, key, array


def load_weights(cfg, files: list[str], *, shardings: Callable[[tuple], jax.sharding.Sharding] | None = None
                 ) -> nnx.Module:
    """Builds the model for `cfg` from safetensors files, tensor by tensor.

    shardings: optional function from parameter path to the `jax.sharding.Sharding` to place it with
    (the sharding code passes one); default: the default device.
    Raises ValueError listing missing / unexpected keys and naming any shape mismatch.
    """
    graphdef, state = nnx.split(abstract_model(cfg))
    table = _key_table(state)
    tied = getattr(getattr(cfg, "text_config", cfg), "tie_word_embeddings", False)   # CLIP text: no such field
    loaded, unexpected, values = set(), [], {}
    stacks: dict[tuple, tuple[np.ndarray, set]] = {}   # stacked parameter -> (host buffer, layers filled)

    def place(path, var, array):
        values[path] = var.replace(jnp.asarray(array, dtype=var.dtype) if shardings is None else
                                   jax.device_put(array.astype(var.dtype), shardings(path)))

    tensors, read_tensors = iter_tensors(files), family_of(cfg).read_tensors
    if read_tensors is not None:   # e.g. open_clip's names (in_proj split in three) -> ours
        tensors = read_tensors(tensors)
    for file, key, array in tensors:
        name = canonical_key(key, cfg)
        if name not in table:
            if _IGNORED_KEYS.search(name) or (tied and name.endswith("lm_head.weight")):
                continue
            unexpected.append(key)
            continue
        path, var, layer = table[name]
        array = _from_torch(array, str(path[-1]))
        expected = var.shape if layer is None else var.shape[1:]
        where = "/".join(map(str, path)) + ("" if layer is None else f" (layer {layer} of the stack)")
        if array.shape != expected:
            raise ValueError(f"{os.path.basename(file)}: {key} has shape {array.shape} (after layout change), "
                             f"the model's {where} expects {expected}")
        if not jnp.issubdtype(array.dtype, jnp.floating):   # float32 <-> bfloat16 is a cast; int -> float is not
            raise ValueError(f"{os.path.basename(file)}: {key} has dtype {array.dtype}, the model's "
                             f"{where} is a floating-point parameter ({jnp.dtype(var.dtype).name})")
        if name in loaded:
            raise ValueError(f"{os.path.basename(file)}: {key} appears twice (as {name})")
        loaded.add(name)
        if layer is None:
            place(path, var, array)
        else:   # a slice of a stacked parameter: placed once every layer has arrived
            buffer, filled = stacks.setdefault(path, (np.empty(var.shape, jnp.dtype(var.dtype)), set()))
            buffer[layer] = array
            filled.add(layer)
            if len(filled) == var.shape[0]:
                place(path, var, stacks.pop(path)[0])
        del array
    missing = sorted(set(table) - set(loaded))
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the model config: missing keys {missing[:20]}"
                         f"{' ...' if len(missing) > 20 else ''} ({len(missing)}); unexpected keys "
                         f"{sorted(unexpected)[:20]}{' ...' if len(unexpected) > 20 else ''} ({len(unexpected)})")
    return nnx.merge(graphdef, nnx.from_flat_state(list(values.items())))


def load_hf(path_or_hub_id: str, dtype=jnp.float32, param_dtype=None, *, revision: str | None = None,
            shardings=None, scan_layers: bool = False) -> nnx.Module:
    """Loads a LLaVA, LLaVA-NeXT, CLIP, Llama, OPT, BLIP-2 or InstructBLIP checkpoint (chosen by its
    config.json), or an open_clip EVA01-CLIP one (open_clip_config.json: `convert/openclip.py`) as our model.

    dtype: computation dtype; param_dtype: storage dtype (default: dtype).  Accepts transformers-5
    files, transformers-4 hub files (`vision_tower.vision_model.*`) and in-memory `model.*` names.
    scan_layers: store a Llama decoder's layers stacked and run them with `jax.lax.scan` (models/scan.py).
    """
    checkpoint_dir = resolve_checkpoint(path_or_hub_id, revision)
    cfg = hf_config.with_decoder_options(hf_config.load_config(checkpoint_dir, dtype, param_dtype),
                                         scan_layers=scan_layers)
    return load_weights(cfg, safetensors_files(checkpoint_dir), shardings=shardings)


# ---------------------------------------------------------------------------------------------- saving


def save_hf(model: nnx.Module, out_dir: str, *, source: str | None = None,
            max_shard_bytes: int = 5 * 2**30) -> None:
    """Writes `config.json` + safetensors (sharded with an index past `max_shard_bytes`) that transformers'
    `from_pretrained` loads with no missing or unexpected keys.  Weights keep their `param_dtype`.
    source: the folder the model came from (Hugging Face, or our orbax checkpoint); its tokenizer, image
    processor and generation config are copied (`companions`), so the export loads like its source.  A
    generation_config.json is written from the model's config when the source has none.
    LoRA adapters (`train.lora`) are merged into their kernels on the way out; the model is not changed.
    Tensors are fetched and written one at a time (`safetensors_stream`), so the host holds one tensor beside
    the model, whatever the shard size.
    In a multi-process run every process must call it (arrays are gathered collectively); only process 0
    writes."""
    writer = jax.process_index() == 0
    if writer:
        os.makedirs(out_dir, exist_ok=True)
        hf_cfg = hf_config.to_hf(model.config)
        hf_cfg.save_pretrained(out_dir)
        if source is not None:
            companions.copy_companions(source, out_dir)
        if family_of(model.config).kind != "clip":   # a generating model
            companions.write_generation_config(hf_cfg, out_dir)
    lora = {path[:-1]: node.delta() for path, node in nnx.iter_graph(model) if isinstance(node, LoRA)}
    sources = {}   # HF key -> (parameter path, variable, layer of a stacked parameter or None)
    specs = []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if "lora" in path:
            continue
        slices = per_layer_paths(path, var)
        shape = var.shape if slices is None else var.shape[1:]
        torch_shape = _to_torch(np.broadcast_to(np.zeros((), np.uint8), shape), str(path[-1])).shape
        for layer, layer_path in ([(None, path)] if slices is None else enumerate(slices)):
            key = hf_key(layer_path)
            sources[key] = (path, var, layer)
            specs.append(safetensors_stream.TensorSpec(key, torch_shape, jnp.dtype(var.dtype)))

    def host_array(key: str) -> np.ndarray:
        path, var, layer = sources[key]
        value = var[...] if layer is None else var[...][layer]
        if path[-1] == "kernel" and path[:-1] in lora:   # (a stacked adapter's delta is [L, in, out])
            delta = lora[path[:-1]] if layer is None else lora[path[:-1]][layer]
            value = (value.astype(jnp.float32) + delta).astype(value.dtype)
        return np.asarray(_to_torch(_to_host(value), str(path[-1])))

    shards = safetensors_stream.plan_shards(specs, max_shard_bytes)
    names = ["model.safetensors"] if len(shards) == 1 else \
        [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        arrays = (host_array(spec.key) for spec in shard)
        if writer:   # written under a temporary name, renamed once complete
            tmp = os.path.join(out_dir, f".{name}.tmp")
            safetensors_stream.write(tmp, shard, arrays, metadata={"format": "pt"})
            os.replace(tmp, os.path.join(out_dir, name))
        else:
            for _ in arrays:   # the gathers are collective: every process takes part
                pass
    if writer and len(shards) > 1:
        index = os.path.join(out_dir, "model.safetensors.index.json")
        weight_map = {spec.key: name for name, shard in zip(names, shards) for spec in shard}
        with open(index + ".tmp", "w") as f:
            json.dump({"metadata": {"total_size": sum(s.nbytes for s in specs)}, "weight_map": weight_map}, f,
                      indent=2)
        os.replace(index + ".tmp", index)


def _to_host(value: jax.Array) -> np.ndarray:
    """The full value on this host (gathered across processes when it is sharded over several)."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(jax.device_get(value))
