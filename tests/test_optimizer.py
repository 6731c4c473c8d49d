"""`train.optimizer` + `train.step` on one device: parameter groups freeze everything they do not match, per-group
learning rates, the warmup-cosine schedule, the weight-decay mask, gradient accumulation, LoRA dropout, and a
few hundred steps that learn toy tasks with each objective."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tiny_models import CLIP, IMAGE_TOKEN, LLAMA, new_llava
from vlmcls_jax.models import CLIPModel, LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.heads import WithHead
from vlmcls_jax.train.lora import LoRA, apply_lora
from vlmcls_jax.train.objectives import make_objective
from vlmcls_jax.train.optimizer import ParamGroup, check_groups, decay_mask, make_optimizer, path_str, warmup_cosine
from vlmcls_jax.train.step import init_train_state, split_model, train_step


def llava_batch(seed=0, B=4, T=12):
    """[bos, <image> x 4, prompt, answer] with answers (loss_mask) on positions 8..11 of every row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, IMAGE_TOKEN, (B, T)).astype(np.int32)
    ids[:, 1:5] = IMAGE_TOKEN
    return dict(input_ids=ids, attention_mask=np.ones((B, T), np.int32),
                loss_mask=np.broadcast_to(np.arange(T) >= 8, (B, T)).astype(np.int32),
                pixel_values=rng.standard_normal((B, 28, 28, 3)).astype(np.float32))


def flat_params(model_or_state):
    state = nnx.state(model_or_state, nnx.Param) if isinstance(model_or_state, nnx.Module) else model_or_state
    return {path_str(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(state)}


# Halves XLA:CPU compile time of these tiny steps (LLVM optimisation only; the computation is the same).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def setup(model, groups, objective="text_generation", jit=True, **opt_kwargs):
    _, trainable, _ = split_model(model, groups)
    opt_kwargs.setdefault("total_steps", 10)
    opt_kwargs.setdefault("warmup_ratio", 0.1)   # warmup of 1 step: update 0 has lr 0, later ones the peak
    tx = make_optimizer(trainable, groups, **opt_kwargs)
    graphdef, state, frozen = init_train_state(model, groups, tx)
    # Commit every array to device 0, as the step's outputs are: otherwise the second call recompiles.
    state, frozen = jax.device_put((state, frozen), jax.devices()[0])
    objective = make_objective(objective) if isinstance(objective, (str, dict)) else objective
    fn = functools.partial(train_step, graphdef, objective, tx)
    return graphdef, state, frozen, tx, (jax.jit(fn, compiler_options=FAST_COMPILE) if jit else fn)


def param_leaf_sizes(tree):
    """Sizes of the non-scalar array leaves of an optimizer state (Adam's mu and nu; not counts)."""
    return sum(x.size for x in jax.tree.leaves(tree) if hasattr(x, "ndim") and x.ndim > 0)


# ---------------------------------------------------------------------------------------- groups


def test_projector_group_trains_only_the_projector():
    model = new_llava()
    before = flat_params(model)
    groups = [ParamGroup("projector", ("projector",), 1e-2)]
    graphdef, state, frozen, tx, step = setup(model, groups)
    projector = {k for k in before if k.startswith("multi_modal_projector/")}
    projector_size = sum(before[k].size for k in projector)
    assert set(flat_params(state.params)) == projector
    assert param_leaf_sizes(state.opt_state) == 2 * projector_size     # Adam mu + nu, nothing else
    frozen_params = {path_str(p) for p, v in nnx.to_flat_state(frozen) if isinstance(v, nnx.Param)}
    assert frozen_params == set(before) - projector
    batch = llava_batch()
    for _ in range(3):
        state, metrics = step(state, frozen, batch, None)
        assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    assert int(state.step) == 3
    after = flat_params(nnx.merge(graphdef, state.params, frozen))
    assert after.keys() == before.keys()
    for k in before:
        if k in projector:
            assert not np.array_equal(after[k], before[k]), k
        else:
            assert np.array_equal(after[k], before[k]), k
    assert param_leaf_sizes(state.opt_state) == 2 * projector_size


def test_check_groups():
    model = new_llava()
    apply_lora(model, rank=4, alpha=8)
    params = flat_params(model)
    state = nnx.state(model, nnx.Param)
    size = lambda pred: sum(v.size for k, v in params.items() if pred(k))
    counts = check_groups(state, [ParamGroup("projector", ("projector",), 1e-3),
                                  ParamGroup("lora", ("lora",), 1e-4)])
    assert counts == {"projector": size(lambda k: k.startswith("multi_modal_projector/")),
                      "lora": size(lambda k: "/lora/lora_" in k)}
    # lora (rank 4) on 2 x (q 32x32, k 32x16, v 32x16, o 32x32, gate 32x64, up 32x64, down 64x32)
    per_layer = sum(4 * (i + o) for i, o in [(32, 32), (32, 16), (32, 16), (32, 32), (32, 64), (32, 64), (64, 32)])
    assert counts["lora"] == 2 * per_layer
    # first matching group wins: lora params inside language_model go to whichever comes first
    counts = check_groups(state, [ParamGroup("lora", ("lora",), 1e-4), ParamGroup("llm", ("llm",), 1e-5)])
    assert counts["lora"] == 2 * per_layer
    assert counts["llm"] == size(lambda k: k.startswith("language_model/") and "/lora/" not in k)
    with pytest.raises(ValueError, match="typo"):
        check_groups(state, [ParamGroup("projector", ("projector",), 1e-3),
                             ParamGroup("typo", (r"^multi_modal_projecter/",), 1e-3)])
    with pytest.raises(ValueError, match="head"):
        check_groups(state, [ParamGroup("head", ("head",), 1e-3)])   # a LLaVA has no head


def test_two_groups_with_their_own_learning_rates():
    model = new_llava()
    apply_lora(model, rank=4, alpha=8)
    for _, node in nnx.iter_graph(model):     # nonzero B so that A gets gradients too
        if isinstance(node, LoRA):
            node.lora_b[...] = jnp.full(node.lora_b[...].shape, 0.01)
    before = flat_params(model)
    groups = [ParamGroup("projector", ("projector",), 1e-2), ParamGroup("lora", ("lora",), 0.0)]
    graphdef, state, frozen, tx, step = setup(model, groups, weight_decay=0.1)
    batch = llava_batch()
    for _ in range(3):
        state, metrics = step(state, frozen, batch, None)
    after = flat_params(nnx.merge(graphdef, state.params, frozen))
    lora = [k for k in before if "/lora/" in k]
    projector = [k for k in before if k.startswith("multi_modal_projector/")]
    assert len(lora) == 28 and projector
    assert all(np.array_equal(after[k], before[k]) for k in lora)
    assert all(not np.array_equal(after[k], before[k]) for k in projector)
    assert all(np.array_equal(after[k], before[k]) for k in before if k not in lora and k not in projector)


# ---------------------------------------------------------------------------------------- schedule, decay


def test_warmup_cosine_schedule():
    lr = 2e-3
    sched = warmup_cosine(lr, total_steps=100, warmup_ratio=0.1)
    closed = lambda t: lr * t / 10 if t < 10 else lr * 0.5 * (1 + math.cos(math.pi * (t - 10) / 90))
    assert float(sched(0)) == 0.0
    assert float(sched(5)) == pytest.approx(lr / 2, rel=1e-6)
    assert float(sched(10)) == pytest.approx(lr, rel=1e-6)
    assert float(sched(55)) == pytest.approx(lr / 2, rel=1e-5)
    assert float(sched(100)) == pytest.approx(0.0, abs=1e-12)
    for t in [1, 3, 9, 10, 11, 25, 55, 70, 99, 100]:
        assert float(sched(t)) == pytest.approx(closed(t), rel=1e-5, abs=1e-9), t
    values = [float(sched(t)) for t in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def hf_cosine_with_warmup(step, total_steps, warmup_ratio):
    """transformers' get_cosine_schedule_with_warmup factor, with TrainingArguments' warmup steps
    (ceil(total * ratio)): what LLaVA's training script uses."""
    warmup = math.ceil(total_steps * warmup_ratio)
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))


def test_warmup_cosine_without_warmup_starts_at_the_peak():
    """warmup_ratio=0 means no warmup (the docstring; transformers: factor 1 at step 0).  Fails today: the
    schedule forces one warmup step (`max(1, ...)`), so the first update has learning rate 0."""
    sched = warmup_cosine(1.0, total_steps=10, warmup_ratio=0.0)
    for t in [0, 1, 5, 9, 10]:
        assert float(sched(t)) == pytest.approx(hf_cosine_with_warmup(t, 10, 0.0), abs=1e-6), t


@pytest.mark.parametrize("total_steps,warmup_ratio", [(150, 0.03), (70, 0.03)])
def test_warmup_cosine_rounds_warmup_steps_up_like_transformers(total_steps, warmup_ratio):
    """LLaVA's schedule has ceil(total * ratio) warmup steps (TrainingArguments.get_warmup_steps).  Fails today:
    `round` gives 4 instead of 5 warmup steps for 150 x 0.03, and 2 instead of 3 for 70 x 0.03."""
    sched = warmup_cosine(1.0, total_steps=total_steps, warmup_ratio=warmup_ratio)
    for t in range(0, total_steps + 1):
        assert float(sched(t)) == pytest.approx(hf_cosine_with_warmup(t, total_steps, warmup_ratio), abs=1e-6), t


@pytest.mark.parametrize("total_steps,warmup_ratio", [(100, 0.1), (100, 0.03), (5197, 0.03), (40, 0.05)])
def test_warmup_cosine_equals_transformers_schedule(total_steps, warmup_ratio):
    sched = warmup_cosine(1.0, total_steps=total_steps, warmup_ratio=warmup_ratio)
    for t in sorted({0, 1, 2, 3, 4, 5, 6, total_steps // 3, total_steps // 2, total_steps - 1, total_steps}):
        assert float(sched(t)) == pytest.approx(hf_cosine_with_warmup(t, total_steps, warmup_ratio), abs=1e-6), t


def test_decay_mask_selects_matrices_only():
    model = WithHead(CLIPModel(CLIP, rngs=nnx.Rngs(0)), width=16, num_classes=3, rngs=nnx.Rngs(1))
    state = nnx.state(model, nnx.Param)
    mask = {path_str(p): bool(v.get_value()) for p, v in nnx.to_flat_state(decay_mask(state))}
    params = flat_params(state)
    assert mask.keys() == params.keys()
    assert mask["head/kernel"] and not mask["head/bias"]
    assert mask["backbone/text_model/encoder/layers/0/self_attn/q_proj/kernel"]
    assert not mask["backbone/text_model/encoder/layers/0/self_attn/q_proj/bias"]
    assert not mask["backbone/text_model/encoder/layers/0/layer_norm1/scale"]
    assert not mask["backbone/text_model/final_layer_norm/bias"]
    assert mask["backbone/vision_model/embeddings/patch_embedding"]          # 4-D
    assert mask["backbone/text_model/embeddings/token_embedding/embedding"]
    assert not mask["backbone/logit_scale"]                                  # scalar
    assert not mask["backbone/vision_model/embeddings/class_embedding"]      # 1-D
    for k, v in params.items():
        assert mask[k] == (v.ndim >= 2), k


def test_weight_decay_applies_to_kernels_not_to_biases_or_norms():
    """With all-zero gradients AdamW's update is the decay alone: kernels shrink, vectors stay."""
    model = new_llava()
    proj = model.multi_modal_projector
    proj.linear_1.bias[...] = jnp.full(proj.linear_1.bias[...].shape, 0.5)
    before = flat_params(model)
    zero_objective = lambda m, b: (0.0 * jnp.sum(m.multi_modal_projector.linear_1.kernel[...]), {})
    groups = [ParamGroup("projector", ("projector",), 0.1)]
    graphdef, state, frozen, tx, step = setup(model, groups, objective=zero_objective, weight_decay=0.5,
                                              max_grad_norm=None)
    for _ in range(2):    # update 0 has lr 0 (warmup), update 1 the peak lr 0.1
        state, _ = step(state, frozen, {}, None)
    after = flat_params(state.params)
    for k in ("multi_modal_projector/linear_1/kernel", "multi_modal_projector/linear_2/kernel"):
        np.testing.assert_allclose(after[k], before[k] * (1 - 0.1 * 0.5), rtol=1e-6)
    for k in ("multi_modal_projector/linear_1/bias", "multi_modal_projector/linear_2/bias"):
        np.testing.assert_array_equal(after[k], before[k])


# ---------------------------------------------------------------------------------------- accumulation


def text_batch(seed=0, B=4, T=10, answer_from=6):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, LLAMA.vocab_size, (B, T)).astype(np.int32)
    return dict(input_ids=ids, attention_mask=np.ones((B, T), np.int32),
                loss_mask=np.broadcast_to(np.arange(T) >= answer_from, (B, T)).astype(np.int32))


def test_gradient_accumulation_equals_the_concatenated_batch():
    groups = [ParamGroup("all", ("all",), 1e-3)]
    full = text_batch(seed=0, B=4)
    micro = [{k: v[:2] for k, v in full.items()}, {k: v[2:] for k, v in full.items()}]
    assert micro[0]["loss_mask"].sum() == micro[1]["loss_mask"].sum()

    model = LlamaForCausalLM(LLAMA, rngs=nnx.Rngs(0))
    graphdef, acc_state, acc_frozen, _, acc_step = setup(nnx.clone(model), groups, accumulate_steps=2)
    _, ref_state, ref_frozen, _, ref_step = setup(model, groups)

    # 3 optimizer updates: 6 micro-batch calls vs 3 full-batch steps (update 0 has lr 0: warmup).
    changed = []
    for update in range(3):
        for mb in micro:
            prev = flat_params(acc_state.params)
            acc_state, metrics = acc_step(acc_state, acc_frozen, mb, None)
            now = flat_params(acc_state.params)
            changed.append(any(not np.array_equal(now[k], prev[k]) for k in now))
        ref_state, _ = ref_step(ref_state, ref_frozen, full, None)
        a, b = flat_params(acc_state.params), flat_params(ref_state.params)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-6, rtol=0, err_msg=f"update {update}: {k}")
    # params change on the second call of each pair only (and not at all on update 0, whose lr is 0)
    assert changed == [False, False, False, True, False, True]
    assert int(acc_state.step) == 6
    # The inner optimizer state (Adam's mu, nu, counts) saw the same mean gradients as the full batch's.
    inner = jax.tree.leaves(acc_state.opt_state.inner_opt_state)
    ref = jax.tree.leaves(ref_state.opt_state)
    assert len(inner) == len(ref)
    for x, y in zip(inner, ref):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------------------------------- LoRA dropout

LLAMA_LINEARS = r"(^|/)model/layers/\d+/(self_attn/(q|k|v|o)_proj|mlp/(gate|up|down)_proj)$"


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_lora_dropout_uses_the_step_rng(impl):
    """train_step(rng=key) turns LoRA dropout on (different keys -> different losses, one key -> one loss),
    with either PRNG `config.lora.dropout_prng` offers; rng=None turns it off (the loss of the model as is).
    (Once failed: `nnx.reseed` inside the step's value_and_grad mutated the `frozen` Variables that
    `nnx.merge` shares: TraceContextError.)"""
    model = LlamaForCausalLM(LLAMA, rngs=nnx.Rngs(0))
    assert len(apply_lora(model, rank=4, alpha=8, dropout=0.5, targets=LLAMA_LINEARS)) == 14
    rng = np.random.default_rng(0)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, LoRA):
            node.lora_b[...] = jnp.asarray(rng.standard_normal(node.lora_b[...].shape) * 0.2, jnp.float32)
    batch = text_batch()
    no_dropout, _ = make_objective("text_generation")(model, batch)
    groups = [ParamGroup("lora", ("lora",), 1e-3)]
    _, state, frozen, _, step = setup(model, groups)
    loss = lambda r: float(step(state, frozen, batch, r)[1]["loss"])
    n1, n2 = loss(None), loss(None)
    assert n1 == n2
    assert n1 == pytest.approx(float(no_dropout), abs=1e-5)
    key = lambda seed: jax.random.key(seed, impl=impl)
    a, b, a2 = loss(key(1)), loss(key(2)), loss(key(1))
    assert a != b
    assert a == a2
    assert abs(a - float(no_dropout)) > 1e-5


def test_the_dropout_key_follows_the_config_and_a_bad_prng_names_the_field():
    from vlmcls_jax.defaults import train_config
    from vlmcls_jax.train.trainer import dropout_key

    config = train_config()
    assert str(dropout_key(config).dtype) == "key<rbg>"      # the default: fast to compile for TPU
    config.lora.dropout_prng = "threefry2x32"
    assert str(dropout_key(config).dtype) == "key<fry>"
    config.lora.dropout_prng = "philox"
    with pytest.raises(ValueError, match=r"config\.lora\.dropout_prng: .*threefry2x32"):
        dropout_key(config)


# ---------------------------------------------------------------------------------------- learning toy tasks


def run_steps(model, groups, objective, batches, steps, lr=1e-2):
    groups = [ParamGroup(g, (g,), lr) for g in groups]
    _, state, frozen, _, step = setup(model, groups, objective=objective, total_steps=steps, warmup_ratio=0.05,
                                      max_grad_norm=1.0)
    losses = []
    for i in range(steps):
        state, metrics = step(state, frozen, batches[i % len(batches)], None)
        losses.append(float(metrics["loss"]))
    return losses


def test_text_generation_learns_successor_task():
    V, T, B = 16, 10, 8
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(4):
        start = rng.integers(0, V, (B, 1))
        ids = ((start + np.arange(T)) % V).astype(np.int32)                # token t+1 = token t + 1 mod V
        batches.append(dict(input_ids=ids, attention_mask=np.ones_like(ids), loss_mask=np.ones_like(ids)))
    losses = run_steps(LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)), ["all"], "text_generation", batches, 200)
    assert losses[0] > 2.0            # ~ log 16 at init
    assert np.mean(losses[-10:]) < 0.5 * losses[0], (losses[0], losses[-10:])


def test_classification_learns_first_token_mod_classes():
    V, T, B, C = 16, 6, 16, 5
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(4):
        ids = rng.integers(0, V, (B, T)).astype(np.int32)
        batches.append(dict(input_ids=ids, attention_mask=np.ones_like(ids), labels=(ids[:, 0] % C).astype(np.int32)))
    model = WithHead(LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)), width=32, num_classes=C, rngs=nnx.Rngs(1))
    losses = run_steps(model, ["all"], "classification", batches, 200)
    assert np.mean(losses[-10:]) < 0.5 * losses[0], (losses[0], losses[-10:])


def test_clip_contrastive_learns_paired_images_and_texts():
    B, T = 8, 6
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 49, (B, T)).astype(np.int32)
    ids[:, -1] = 49                                                   # EOS (pooled position)
    batch = dict(input_ids=ids, attention_mask=np.ones_like(ids),
                 pixel_values=rng.standard_normal((B, 28, 28, 3)).astype(np.float32))
    losses = run_steps(CLIPModel(CLIP, rngs=nnx.Rngs(0)), ["all"], "clip_contrastive", [batch], 200)
    assert np.mean(losses[-10:]) < 0.5 * losses[0], (losses[0], losses[-10:])
