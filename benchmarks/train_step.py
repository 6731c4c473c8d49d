"""One training step of the small LLaVA (issue 7, benchmark 4): ours (`train.step.jit_train_step`, the
trainer's own step) vs transformers with PyTorch autocast, same random weights and batch, and the model FLOP
utilisation (MFU) of each against the matmul peak measured in this run.

    python benchmarks/train_step.py [--dtypes bfloat16,float32] [--repeats 3] [--tiny] [--scan-layers]

The step: LLaVA's stage-2 fine-tuning. The projector and the whole LLM train (AdamW, float32 master weights
and optimizer state), the CLIP tower is frozen; batch 4 of 1 + 196 image tokens + 31 text tokens, next-token
loss on the text tokens.  bfloat16: ours computes in bfloat16 with float32 accumulation (`model.dtype` =
bfloat16, `param_dtype` = float32, as configs/ train); transformers runs under
`torch.autocast("cpu", torch.bfloat16)`.  float32: both sides in float32.

Model FLOPs (`step_flops`, counted by hand from the config, the same number for both sides): the frozen
tower's forward over the layers the features need, and 3x the forward (forward + two backward products)
of the projector and the LLM, attention products included (full square, as the usual MFU convention); the
optimizer's elementwise work is not counted.  MFU = model FLOPs / step time / the matmul peak of this dtype
(bfloat16 inputs with float32 accumulation for bfloat16), measured in the same run.
"""

from __future__ import annotations

import numpy as np

import benchlib

LEARNING_RATE = 1e-5


def step_flops(cfg, batch: int, seq_len: int) -> float:
    """Model FLOPs of one step (see the module docstring).  cfg: transformers' LlavaConfig."""
    v, t = cfg.vision_config, cfg.text_config
    patches = (v.image_size // v.patch_size) ** 2
    vision_layers = v.num_hidden_layers + 1 + cfg.vision_feature_layer if cfg.vision_feature_layer < 0 \
        else cfg.vision_feature_layer
    n = patches + 1                                      # with the class token
    vision = (2 * patches * 3 * v.patch_size ** 2 * v.hidden_size
              + vision_layers * (2 * n * (4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size)
                                 + 4 * n * n * v.hidden_size))
    projector = 2 * patches * (v.hidden_size * t.hidden_size + t.hidden_size ** 2)
    head_dim = t.hidden_size // t.num_attention_heads
    kv = 2 * t.num_key_value_heads * head_dim
    per_layer = (2 * seq_len * t.hidden_size * (2 * t.hidden_size + kv + 3 * t.intermediate_size)
                 + 4 * seq_len * seq_len * t.hidden_size)
    llm = t.num_hidden_layers * per_layer + 2 * seq_len * t.hidden_size * t.vocab_size
    return batch * (vision + 3 * (projector + llm))


def ours_train_step(folder: str, dtype: str, ids, pixels, loss_mask, losses: list, scan_layers: bool = False):
    """The trainer's step (float32 parameters, `dtype` compute; projector + LLM trained) on the checkpoint in
    `folder`, as a callable that runs one step on the fixed batch and appends its loss to `losses`."""
    import jax
    import jax.numpy as jnp

    from vlmcls_jax import sharding as shd
    from vlmcls_jax.convert import load_hf
    from vlmcls_jax.train.objectives import make_objective
    from vlmcls_jax.train.optimizer import ParamGroup, make_optimizer
    from vlmcls_jax.train.step import init_train_state, jit_train_step, split_model

    mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])   # one device, as the PyTorch side
    with jax.set_mesh(mesh):
        model = load_hf(folder, dtype=jnp.dtype(dtype), param_dtype=jnp.float32, scan_layers=scan_layers)
        shd.shard_model(model, mesh)
        groups = [ParamGroup("llm_projector", ("projector", "llm"), LEARNING_RATE)]
        tx = make_optimizer(split_model(model, groups)[1], groups, total_steps=1000, warmup_ratio=0.0)
        graphdef, state, frozen = init_train_state(model, groups, tx)
        del model
        step = jit_train_step(graphdef, make_objective("text_generation"), tx, state, frozen, mesh,
                              {"input_ids": 2, "attention_mask": 2, "loss_mask": 2, "pixel_values": 4})
    batch = {"input_ids": jnp.asarray(ids, jnp.int32), "attention_mask": jnp.ones(ids.shape, jnp.int32),
             "loss_mask": jnp.asarray(loss_mask, jnp.int32), "pixel_values": jnp.asarray(pixels)}
    holder = {"state": state}

    def run_step():
        holder["state"], metrics = step(holder["state"], frozen, batch, None)
        losses.append(float(metrics["loss"]))

    return run_step


def text_loss_mask(cfg, ids):
    """int[B, T]: 1 on the text tokens after the image (the loss the step trains)."""
    text = ids.shape[1] - (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 - 1
    loss_mask = np.zeros_like(ids)
    loss_mask[:, -text:] = 1
    return loss_mask


def run(dtypes=("bfloat16", "float32"), repeats: int = 3, tiny: bool = False, scan_layers: bool = False) -> dict:
    import tempfile

    import torch

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        ref, cfg = benchlib.hf_llava(folder, tiny=tiny)
        ids, pixels = benchlib.inputs(cfg)
        loss_mask = text_loss_mask(cfg, ids)
        flops = step_flops(cfg, *ids.shape)
        initial = {k: v.clone() for k, v in ref.state_dict().items()}
        for dtype in dtypes:
            losses = {"ours": [], "transformers": []}
            ours_step = ours_train_step(folder, dtype, ids, pixels, loss_mask, losses["ours"], scan_layers)

            # transformers: the same weights, vision tower frozen, AdamW (fused, float32 master weights)
            ref.load_state_dict(initial)
            ref.float().train()
            for name, p in ref.named_parameters():
                p.requires_grad_(not name.startswith(("model.vision_tower", "vision_tower")))
            opt = torch.optim.AdamW([p for p in ref.parameters() if p.requires_grad], lr=LEARNING_RATE,
                                    weight_decay=0.0, foreach=True)
            t_ids, t_pixels = torch.tensor(ids), torch.tensor(pixels.transpose(0, 3, 1, 2))
            labels = torch.where(torch.tensor(loss_mask, dtype=torch.bool), t_ids, torch.full_like(t_ids, -100))

            def torch_step():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                    loss = ref(input_ids=t_ids, pixel_values=t_pixels, labels=labels).loss
                losses["transformers"].append(loss.item())
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in ref.parameters() if p.requires_grad], 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)

            times = benchlib.alternate({"transformers": torch_step, "ours": ours_step}, repeats)
            # Same weights, same batch: the first step's losses agree (bfloat16 to its precision).
            first = losses["ours"][0], losses["transformers"][0]
            if not np.isclose(*first, rtol=1e-4 if dtype == "float32" else 2e-2):
                raise AssertionError(f"{dtype}: first-step losses differ: ours {first[0]}, transformers {first[1]}")
            peak = benchlib.matmul_peak(dtype)
            results[dtype] = dict(times, ratio=times["transformers"] / times["ours"], flops=flops, peak=peak,
                                  mfu=flops / times["ours"] / peak, loss=first,
                                  mfu_transformers=flops / times["transformers"] / peak)
            r = results[dtype]
            print(f"{dtype:9s} transformers {r['transformers'] * 1e3:8.1f} ms  ours {r['ours'] * 1e3:8.1f} ms  "
                  f"speed-up {r['ratio']:.2f}x   {flops / 1e12:.3f} TFLOP per step: MFU ours {r['mfu']:.0%}, "
                  f"transformers {r['mfu_transformers']:.0%} of the {peak / 1e9:.0f} GFLOP/s matmul peak",
                  flush=True)
    return results


if __name__ == "__main__":
    benchlib.cli(run, __doc__, repeats=3, flags={"--scan-layers": "ours with scanned decoder layers"})
