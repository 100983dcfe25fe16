"""Helpers of the backend tests: the edited tiny model, adapters, scoring, gathering.

The engine they share is started once per session by the ``vllm_backend`` fixture of
``conftest.py``.
"""

from __future__ import annotations

import asyncio
import math
import shutil

import torch

from thoughtmdp.backend import SamplingParams

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
THOUGHT_PROBABILITY = 0.25
FREE = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=32, seed=0)
ENGINE_OPTIONS = {"dtype": "float32", "max_model_len": 2048}
MAX_IN_FLIGHT = 4


def build_thought_model(tiny_model_dir, folder):
    """The tiny model with ``P(</thought>) = 0.25`` after any context, EOS never sampled.

    The last attention layer's value bias adds a constant 1000 to residual dimension 0, so
    the final hidden state is ~8 * e_0 whatever the context; the tied embedding's column 0
    then sets the logits: ln(0.25 / 0.75 * 510) for ``</thought>``, -20 for EOS, 0 for the
    rest (plus noise of order 1e-3 from the other dimensions).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    (thought_id,) = tok.encode("</thought>", add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    attention = model.model.layers[-1].self_attn
    hidden = model.config.hidden_size
    odds = THOUGHT_PROBABILITY / (1 - THOUGHT_PROBABILITY) * (model.config.vocab_size - 2)
    with torch.no_grad():
        attention.v_proj.weight[0].zero_()
        attention.v_proj.bias[0] = 1000.0
        attention.o_proj.weight[:, 0].zero_()
        attention.o_proj.weight[0, 0] = 1.0
        embedding = model.model.embed_tokens.weight
        embedding[:, 0] = 0.0
        embedding[thought_id, 0] = math.log(odds) / math.sqrt(hidden)
        embedding[tok.eos_token_id, 0] = -20.0 / math.sqrt(hidden)
    shutil.copytree(tiny_model_dir, folder)
    model.save_pretrained(folder)
    return folder, model, thought_id


def make_adapter(model_dir, folder, seed, rank=4):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = get_peft_model(base, LoraConfig(r=rank, lora_alpha=8, target_modules=LORA_TARGETS))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:  # B starts at zero, which would leave the model unchanged
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    lora.save_pretrained(folder)
    return folder


async def score(backend, ids, n, request_id):
    """Log-probabilities (T = 1) of the last ``n`` of ``ids`` under the current version."""
    import vllm
    from vllm.inputs import tokens_input

    params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    stream = backend.engine.generate(
        tokens_input(list(ids)), params, request_id, lora_request=backend.lora_request
    )
    outputs = [output async for output in stream]
    steps = outputs[-1].prompt_logprobs[-n:]
    return [step[token].logprob for token, step in zip(ids[-n:], steps, strict=True)]


async def gather(backend, requests):
    """Sample every ``(state_ids, sampling)`` of ``requests`` at once."""
    return await asyncio.gather(*(backend.sample_thought(s, p) for s, p in requests))
