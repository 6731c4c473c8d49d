"""Our `OPTForCausalLM` equals transformers' on the same random weights (tiny models, `load_hf`).

Variants: pre-LayerNorm with a tied head (every released OPT but 350m, and BLIP-2's), and post-LayerNorm
(`do_layer_norm_before=False`: no final LayerNorm) with an untied head.  Inputs: 2 rows, one left-padded;
transformers derives positions from the attention mask (cumsum - 1, plus the offset 2), so it is given no
position ids.  Only real positions are compared.

Tolerance (float32): max abs diff <= 1e-4 on logits (scale ~0.5) and hidden states (scale ~1-3); measured
maxima over both variants: logits 8.9e-8, hidden states 6.6e-7.  The KV-cache path (prefill + one token at a
time) and the shared-prefix scoring path equal the full forward's log-probs to <= 1e-5 (measured 9.5e-7 each).
Greedy generation: token-for-token equal to transformers'.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import tiny_hf
from tiny_hf import assert_close
from vlmcls_jax.convert import config_from_hf, config_to_hf, load_hf, save_hf
from vlmcls_jax.inference import generate
from vlmcls_jax.inference.scoring import score_candidates
from vlmcls_jax.models import OPTForCausalLM

TOL = 1e-4
VARIANTS = {"pre-ln-tied": dict(), "post-ln-untied": dict(do_layer_norm_before=False, tie_word_embeddings=False)}
ROWS = [[1, 7, 5, 6, 8, 11, 12], [1, 9, 10, 13, 14]]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """variant -> (variant, HF model, ours), built on first use."""
    built = {}

    def get(variant):
        if variant not in built:
            folder = tmp_path_factory.mktemp(variant)
            ref = tiny_hf.opt(folder, **VARIANTS[variant])
            ours = load_hf(str(folder))
            assert isinstance(ours, OPTForCausalLM)
            built[variant] = variant, ref, ours
        return built[variant]
    return get


@pytest.fixture(params=sorted(VARIANTS))
def pair(request, pairs):
    return pairs(request.param)


@pytest.fixture
def default_pair(pairs):
    """The pre-LN tied variant only: the cache, prefix and generation paths do not depend on the LN placement."""
    return pairs("pre-ln-tied")


@nnx.jit
def forward(model, ids, mask):
    logits, _ = model(ids, attention_mask=mask)
    return logits, model.decode(ids, attention_mask=mask, output_hidden_states=True).hidden_states


def test_logits_and_hidden_states_left_padded(pair):
    variant, ref, ours = pair
    cfg = ours.config
    assert (ours.lm_head is None) == cfg.tie_word_embeddings and (ours.model.decoder.final_layer_norm is None) == \
        (not cfg.do_layer_norm_before)
    assert config_from_hf(config_to_hf(cfg)) == cfg
    ids, mask = tiny_hf.left_padded(ROWS)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
    logits, hidden = forward(ours, jnp.asarray(ids), jnp.asarray(mask))
    real = mask.astype(bool)
    assert_close(logits, out.logits, TOL, f"{variant} logits", where=real)
    assert len(hidden) == len(out.hidden_states) == 3
    for i, (a, b) in enumerate(zip(hidden, out.hidden_states)):
        assert_close(a, b, TOL, f"{variant} hidden_states[{i}]", where=real)


def test_cache_and_prefix_paths_equal_the_full_forward(default_pair):
    """Prefill 4 tokens into a cache and add the rest one at a time; and score the last 3 tokens as candidates
    continuing the prompt's cache (`score_candidates`, the `prefix=` path).  Both equal one full forward."""
    variant, _, ours = default_pair
    ids, mask = tiny_hf.left_padded(ROWS)
    full = jax.nn.log_softmax(forward(ours, jnp.asarray(ids), jnp.asarray(mask))[0], -1)
    T, split = ids.shape[1], 4
    step = nnx.jit(lambda m, i, a, c: m(i, attention_mask=a, cache=c))
    logits, cache = step(ours, jnp.asarray(ids[:, :split]), jnp.asarray(mask[:, :split]), ours.init_cache(2, T))
    pieces = [logits]
    for t in range(split, T):
        logits, cache = step(ours, jnp.asarray(ids[:, t:t + 1]), jnp.asarray(mask[:, t:t + 1]), cache)
        pieces.append(logits)
    cached = jax.nn.log_softmax(jnp.concatenate(pieces, 1), -1)
    assert_close(cached, full, 1e-5, f"{variant} cached vs full log-probs", where=mask.astype(bool))

    prompt = T - 3                                    # both rows end with 3 real tokens: score them as a candidate
    scores, counts = score_candidates(ours, ids[:, :prompt], mask[:, :prompt], [list(ids[0, prompt:]),
                                                                                list(ids[1, prompt:])])
    assert counts.tolist() == [3, 3]
    # Candidate b is row b's own continuation, whose log-probs the full forward gives: compare the diagonal.
    full = np.asarray(full)
    want = [sum(full[b, prompt - 1 + j, ids[b, prompt + j]] for j in range(3)) for b in range(2)]
    assert_close(np.diag(np.asarray(scores)), np.array(want), 1e-5, f"{variant} prefix scores vs full forward")


def test_greedy_generation_equals_transformers(default_pair):
    variant, ref, ours = default_pair
    ids, mask = tiny_hf.left_padded(ROWS)
    n = 6
    gen = transformers.GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=n, eos_token_id=[1000],
                                        pad_token_id=0)                        # an EOS never emitted: all n steps
    with torch.no_grad():
        expected = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                generation_config=gen).numpy()[:, ids.shape[1]:]
    got = generate(ours, ids, mask, max_new_tokens=n, eos_token_id=[1000], pad_token_id=0)
    np.testing.assert_array_equal(got, expected)


def test_save_hf_round_trip_through_transformers(pair, tmp_path):
    variant, ref, ours = pair
    save_hf(ours, str(tmp_path))
    again, info = transformers.OPTForCausalLM.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ref_state, again_state = ref.state_dict(), again.state_dict()
    assert ref_state.keys() == again_state.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], again_state[k]), (variant, k)
    assert config_from_hf(again.config) == ours.config


def test_unsupported_opt_configs_are_clear_errors():
    with pytest.raises(ValueError, match="word_embed_proj_dim=16 != hidden_size=32"):
        config_from_hf(tiny_hf.opt_config(word_embed_proj_dim=16))
    with pytest.raises(ValueError, match="layer_norm_elementwise_affine=False"):
        config_from_hf(tiny_hf.opt_config(layer_norm_elementwise_affine=False))
