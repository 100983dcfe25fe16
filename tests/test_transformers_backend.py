"""TransformersBackend: stop handling, logprobs, batching, seeds, adapters, pinned versions."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
import re
import threading
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from vllm_helpers import make_adapter

from thoughtmdp.agents.backends.transformers import CLOSED, TransformersBackend, processed_logprobs
from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.mdp.env import ThoughtMDPEnv

FREE = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=16, seed=0)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def backend(tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir)
    yield backend
    backend.close()


@pytest.fixture
def state(tok):
    return tok.encode("Q: 8+6+5\n8+6=14</thought>", add_special_tokens=False)


def run(coroutine):
    return asyncio.run(coroutine)


def forced_backend(tiny_model_dir, tok, token, **kwargs):
    """A backend whose model puts logit 30 on ``token`` and 0 on every other token."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[token] = 30.0
    model.lm_head = head
    return TransformersBackend(model, tok, **kwargs)


def reference_logprobs(backend, state, thought_ids, temperature=1.0):
    """log_softmax(logits / T) of a separate full forward pass, at the sampled positions."""
    ids = torch.tensor([list(state) + list(thought_ids)])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0, len(state) - 1 : -1].float()
    return torch.log_softmax(logits / temperature, dim=-1)  # (n, V)


def test_backend_satisfies_the_protocol(backend):
    assert isinstance(backend, PolicyBackend)
    assert backend.policy_version == 0


def test_thought_ids_decode_to_a_text_that_starts_with_the_thought_text(backend, tok, state):
    thought = run(backend.sample_thought(state, FREE))
    assert 1 <= len(thought.token_ids) <= FREE.max_tokens
    assert len(thought.logprobs) == len(thought.token_ids)
    assert tok.decode(thought.token_ids, skip_special_tokens=True).startswith(thought.text)
    assert "</thought>" not in thought.text
    assert thought.policy_version == 0


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_are_those_of_a_full_forward_pass(backend, state, temperature):
    sampling = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=24, seed=5)
    thought = run(backend.sample_thought(state, sampling))
    expected = reference_logprobs(backend, state, thought.token_ids, temperature)
    picked = expected[torch.arange(len(thought.token_ids)), list(thought.token_ids)]
    assert torch.allclose(torch.tensor(thought.logprobs), picked, atol=1e-4)


def test_top_p_logprobs_are_renormalised_over_the_nucleus(backend, state):
    sampling = SamplingParams(temperature=1.0, top_p=0.3, max_tokens=12, seed=1)
    thought = run(backend.sample_thought(state, sampling))
    full = reference_logprobs(backend, state, thought.token_ids)
    for k, (token, logprob) in enumerate(zip(thought.token_ids, thought.logprobs, strict=True)):
        probs, order = full[k].exp().sort(descending=True)
        size = int((probs.cumsum(0) < 0.3).sum()) + 1  # smallest prefix of mass >= 0.3
        assert token in order[:size].tolist()
        kept_mass = float(probs[:size].sum())
        assert logprob == pytest.approx(float(full[k, token]) - math.log(kept_mass), abs=1e-4)
        assert logprob > float(full[k, token])


def test_greedy_picks_the_argmax_and_reports_raw_logprobs(backend, state):
    sampling = SamplingParams(temperature=0.0, max_tokens=10, stop=())
    thought = run(backend.sample_thought(state, sampling))
    expected = reference_logprobs(backend, state, thought.token_ids)
    assert list(thought.token_ids) == expected.argmax(dim=-1).tolist()
    assert torch.allclose(torch.tensor(thought.logprobs), expected.max(dim=-1).values, atol=1e-4)


def test_processed_logprobs_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]] * 4))
    temperature = torch.tensor([1.0, 1.0, 2.0, 0.0])
    top_p = torch.tensor([0.6, 0.45, 1.0, 0.1])
    out = processed_logprobs(logits, temperature, top_p).exp()
    root = torch.tensor([0.5, 0.3, 0.2]).sqrt()
    expected = torch.stack(
        [
            torch.tensor([0.5 / 0.8, 0.3 / 0.8, 0.0]),  # 0.5 < 0.6 so the second stays
            torch.tensor([1.0, 0.0, 0.0]),
            root / root.sum(),  # T = 2 takes the square root of the probabilities
            torch.tensor([0.5, 0.3, 0.2]),  # greedy: raw softmax, top_p ignored
        ]
    )
    assert torch.allclose(out, expected, atol=1e-6)


def test_same_seed_same_thought_and_other_seeds_differ(backend, state):
    async def sample(seed):
        return await backend.sample_thought(state, SamplingParams(max_tokens=16, seed=seed))

    first, again, other = run(sample(11)), run(sample(11)), run(sample(12))
    assert first == again
    assert first.token_ids != other.token_ids


def test_the_thought_delimiter_ends_a_thought(tiny_model_dir, tok, state):
    (thought_id,) = tok.encode("</thought>", add_special_tokens=False)
    backend = forced_backend(tiny_model_dir, tok, thought_id)
    for temperature in (0.0, 1.0):
        sampling = SamplingParams(temperature=temperature, max_tokens=8, seed=0)
        thought = run(backend.sample_thought(state, sampling))
        assert thought.token_ids == (thought_id,)
        assert thought.text == ""
        assert thought.logprobs[0] == pytest.approx(0.0, abs=1e-6)
    backend.close()


def test_stop_strings_spanning_tokens_and_max_tokens(tiny_model_dir, tok, state):
    (x,) = tok.encode("x", add_special_tokens=False)
    backend = forced_backend(tiny_model_dir, tok, x)
    greedy = SamplingParams(temperature=0.0, max_tokens=5, stop=("xxx", "zz"))
    assert run(backend.sample_thought(state, greedy)).token_ids == (x, x, x)
    thought = run(backend.sample_thought(state, SamplingParams(temperature=0.0, max_tokens=5)))
    assert thought.token_ids == (x,) * 5
    assert thought.text == "xxxxx"
    completion = run(backend.complete("Q:", SamplingParams(temperature=0.0, max_tokens=4)))
    assert (completion.text, completion.token_ids) == ("xxxx", (x,) * 4)
    assert completion.finish_reason == "length"
    stopped = run(backend.complete("Q:", SamplingParams(temperature=0, stop=("xx",))))
    assert (stopped.text, stopped.token_ids, stopped.finish_reason) == ("", (x, x), "stop")
    backend.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_thought_stops_at_the_first_token_that_completes_a_stop_string(backend, tok, seed):
    state = tok.encode("Q:", add_special_tokens=False)
    free = SamplingParams(temperature=1.0, max_tokens=40, seed=seed, stop=())
    long = run(backend.sample_thought(state, free))
    full_text = tok.decode(long.token_ids, skip_special_tokens=True)
    stop = tok.decode(long.token_ids[30:33], skip_special_tokens=True)
    assert len(stop) >= 2 and stop in full_text
    end = next(
        j + 1
        for j in range(len(long.token_ids))
        if stop in tok.decode(long.token_ids[: j + 1], skip_special_tokens=True)
    )
    thought = run(backend.sample_thought(state, dataclasses.replace(free, stop=(stop,))))
    assert thought.token_ids == long.token_ids[:end]
    assert thought.text == full_text[: full_text.find(stop)]


def test_eos_ends_a_thought_and_a_completion_and_is_kept_in_the_ids(tiny_model_dir, tok, state):
    backend = forced_backend(tiny_model_dir, tok, tok.eos_token_id)
    thought = run(backend.sample_thought(state, SamplingParams(temperature=0, max_tokens=8)))
    assert (thought.text, thought.token_ids) == ("", (tok.eos_token_id,))
    completion = run(backend.complete("Q:", SamplingParams(temperature=0, stop=())))
    assert (completion.text, completion.token_ids) == ("", (tok.eos_token_id,))
    assert completion.finish_reason == "stop"
    backend.close()


def test_complete_continues_the_tokenised_prompt(backend, tok):
    sampling = SamplingParams(temperature=0.0, max_tokens=6, stop=())
    completion = run(backend.complete("Q: 1+2", sampling))
    prompt = tok.encode("Q: 1+2", add_special_tokens=False)
    thought = run(backend.sample_thought(prompt, sampling))
    assert completion.token_ids == thought.token_ids
    assert completion.text == tok.decode(thought.token_ids, skip_special_tokens=True)


def batch_requests(tok):
    prompts = [f"Q: {a}+{a + 3}\n" * (1 + a % 3) for a in range(8)]  # lengths differ
    states = [tok.encode(p, add_special_tokens=False) for p in prompts]
    samplings = [
        SamplingParams(temperature=0.0 if k == 3 else 1.0, top_p=0.9, max_tokens=6 + k, seed=k)
        for k in range(8)
    ]
    return list(zip(states, samplings, strict=True))


async def gather_thoughts(backend, requests):
    return await asyncio.gather(*(backend.sample_thought(s, p) for s, p in requests))


def test_concurrent_requests_share_a_batch_and_match_solo_runs(backend, tok):
    requests = batch_requests(tok)
    batched = run(gather_thoughts(backend, requests))
    assert backend.stats["batches"] == 1 and backend.stats["requests"] == 8
    for (state, sampling), thought in zip(requests, batched, strict=True):
        alone = run(backend.sample_thought(state, sampling))
        assert alone.token_ids == thought.token_ids
        assert alone.text == thought.text
        assert alone.logprobs == pytest.approx(thought.logprobs, abs=1e-5)
    assert backend.stats["batches"] == 9


def test_max_batch_size_splits_the_queue(tiny_model_dir, tok):
    backend = TransformersBackend(tiny_model_dir, max_batch_size=3)
    thoughts = run(gather_thoughts(backend, batch_requests(tok)))
    assert len(thoughts) == 8
    assert backend.stats["batches"] == 3
    assert backend.stats["tokens"] == sum(len(t.token_ids) for t in thoughts)
    backend.close()


def test_the_event_loop_keeps_running_while_a_batch_computes(backend, tok, state):
    backend.model.register_forward_hook(lambda *args: time.sleep(0.02))  # a slow model
    sampling = SamplingParams(temperature=0.0, max_tokens=8, stop=())

    async def main():
        ticks = 0
        task = asyncio.ensure_future(backend.sample_thought(state, sampling))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.002)
        return ticks, task.result()

    ticks, thought = run(main())
    assert len(thought.token_ids) == 8
    assert ticks >= 20  # 9 forward passes of >= 20 ms each, the loop ticking every ~2 ms


def test_load_adapter_replaces_the_adapter_and_bumps_the_version(tiny_model_dir, tmp_path, state):
    first = make_adapter(tiny_model_dir, tmp_path / "first", seed=1)
    second = make_adapter(tiny_model_dir, tmp_path / "second", seed=2)
    backend = TransformersBackend(tiny_model_dir)
    base = run(backend.sample_thought(state, FREE))
    run(backend.load_adapter(first, version=5))
    with_first = run(backend.sample_thought(state, FREE))
    assert (backend.policy_version, with_first.policy_version) == (5, 5)
    assert backend.adapter == str(first)
    assert with_first.logprobs != base.logprobs
    run(backend.load_adapter(second))
    with_second = run(backend.sample_thought(state, FREE))
    assert with_second.policy_version == 6
    assert with_second.logprobs != with_first.logprobs
    run(backend.load_adapter(first, version=7))
    again = run(backend.sample_thought(state, FREE))
    assert again.token_ids == with_first.token_ids
    assert again.logprobs == pytest.approx(with_first.logprobs, abs=1e-6)
    backend.close()


def test_an_adapter_load_waits_for_the_running_batch_off_the_event_loop(
    backend, tiny_model_dir, tmp_path, state
):
    folder = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=1)
    running = threading.Event()
    backend.model.register_forward_hook(lambda *args: running.set() or time.sleep(0.02))
    sampling = SamplingParams(temperature=0.0, max_tokens=8, stop=())

    async def main():
        sample = asyncio.ensure_future(backend.sample_thought(state, sampling))
        while not running.is_set():
            await asyncio.sleep(0.002)
        load, ticks = asyncio.ensure_future(backend.load_adapter(folder, version=4)), 0
        while not load.done():
            ticks += 1
            await asyncio.sleep(0.002)
        return sample.done(), ticks, await sample

    sampled_first, ticks, thought = run(main())
    assert sampled_first and thought.policy_version == 0
    assert backend.policy_version == 4
    assert ticks >= 10  # the batch's forward passes take >= 100 ms, the loop ticks every ~2 ms


def test_a_pinned_block_keeps_its_adapter_in_a_batch_mixed_with_the_newest(
    tiny_model_dir, tmp_path, state
):
    backend = TransformersBackend(tiny_model_dir)
    run(backend.load_adapter(make_adapter(tiny_model_dir, tmp_path / "first", seed=1), 1))
    second = make_adapter(tiny_model_dir, tmp_path / "second", seed=2)

    async def main():
        before = await backend.sample_thought(state, FREE)
        async with backend.pinned() as pinned:
            await backend.load_adapter(second)
            batches = backend.stats["batches"]
            # Started in the same tick as the pinned requests, outside the pin: one batch.
            newest = asyncio.create_task(
                backend.sample_thought(state, FREE), context=contextvars.Context()
            )
            inside = await gather_thoughts(backend, [(state, FREE)] * 2)
            during = set(backend.model.peft_config)
            mixed = backend.stats["batches"] - batches
            newest = await newest
        return pinned, before, inside, newest, mixed, during, set(backend.model.peft_config)

    pinned, before, inside, newest, mixed, during, after = run(main())
    assert (pinned, backend.policy_version, mixed) == (1, 2, 1)
    for thought in inside:  # same seed, same adapter: the thought sampled before the load
        assert thought.policy_version == 1
        assert thought.token_ids == before.token_ids
        assert thought.logprobs == pytest.approx(before.logprobs, abs=1e-5)
    alone = run(backend.sample_thought(state, FREE))
    assert newest.policy_version == alone.policy_version == 2
    assert newest.token_ids == alone.token_ids
    assert newest.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    assert newest.logprobs != pytest.approx(before.logprobs, abs=1e-3)  # another adapter
    assert len(during) == 2 and after == during - {"policy_1"}
    backend.close()


def test_an_adapter_given_at_construction_is_used(tiny_model_dir, tmp_path, state):
    folder = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=1)
    backend = TransformersBackend(tiny_model_dir, adapter=folder, policy_version=3)
    assert backend.policy_version == 3
    thought = run(backend.sample_thought(state, FREE))
    expected = reference_logprobs(backend, state, thought.token_ids)
    picked = expected[torch.arange(len(thought.token_ids)), list(thought.token_ids)]
    assert torch.allclose(torch.tensor(thought.logprobs), picked, atol=1e-4)
    named = run(backend.sample_thought(state, SamplingParams(adapter=str(folder))))
    assert named.policy_version == 3
    message = (
        f"this backend samples with the adapter {str(folder)!r}, the request asks for 'other'; "
        "call load_adapter() first or pass adapter=None"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        run(backend.sample_thought(state, SamplingParams(adapter="other")))
    backend.close()


def test_bad_inputs_are_rejected(tiny_model_dir, backend):
    with pytest.raises(ValueError, match="^expected at least one input token id, got none$"):
        run(backend.sample_thought([], FREE))
    with pytest.raises(ValueError, match=r"^token ids must be in \[0, 512\), got 3\.\.512$"):
        run(backend.sample_thought([3, 512], FREE))
    with pytest.raises(ValueError, match="^max_batch_size must be at least 1, got 0$"):
        TransformersBackend(tiny_model_dir, max_batch_size=0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match=r"^a model object needs its tokenizer: pass tokenizer"):
        TransformersBackend(model)


def test_a_closed_backend_refuses_requests(backend, state):
    run(backend.sample_thought(state, FREE))
    backend.close()
    with pytest.raises(RuntimeError, match=f"^{re.escape(CLOSED)}$"):
        run(backend.sample_thought(state, FREE))


def test_sampled_thoughts_drive_the_env(tiny_model_dir, tok, backend):
    env = ThoughtMDPEnv("arith_chain", num_steps=2, seed=0, tokenizer=tok)
    obs, info = env.reset(options={"problem": 0})
    assert tok.decode(info["prompt_token_ids"]) == obs["prompt"]
    sampling = SamplingParams(max_tokens=8, seed=0)
    thought = run(backend.sample_thought(info["prefix_token_ids"], sampling))
    obs, _, _, _, info = env.step(thought)
    assert info["prefix_token_ids"] == info["prompt_token_ids"] + thought.token_ids
    assert obs["thoughts"] == (thought.text,)
    obs, _, _, _, info = env.step("8+6=14</thought>")
    assert info["prefix_token_ids"][-1] == tok.encode("</thought>", add_special_tokens=False)[0]
