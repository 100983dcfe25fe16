"""VLLMBackend adapters: new versions, removal after the last request or pin, learner notices.

These tests share the session's engine with ``test_vllm_backend.py`` and run after it: they
load adapters, and the last one shuts the engine down.
"""

from __future__ import annotations

import asyncio
import re

import pytest
import torch
from vllm_helpers import FREE, LORA_TARGETS, gather, make_adapter, score

from thoughtmdp.agents.backends.vllm import CLOSED
from thoughtmdp.backend import SamplingParams

pytestmark = pytest.mark.slow  # the shared engine takes ~30 s to start on CPU


@pytest.fixture
def backend(vllm_backend):
    return vllm_backend


@pytest.fixture
def runner(vllm_runner):
    return vllm_runner


@pytest.fixture(scope="module")
def state(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return tok.encode("Q: 8+6+5\n8+6=14</thought>", add_special_tokens=False)


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


def test_a_pinned_block_samples_with_its_version_until_it_ends(backend, runner, state, tmp_path):
    folder = backend.engine.model_config.model
    runner.run(backend.load_adapter(make_adapter(folder, tmp_path / "old", seed=5)))
    old_id, old_version = backend.lora_request.lora_int_id, backend.policy_version

    async def main():
        before = await backend.sample_thought(state, FREE)
        async with backend.pinned() as pinned:
            await backend.load_adapter(make_adapter(folder, tmp_path / "new", seed=6))
            inside = await backend.sample_thought(state, FREE)
            spawned = await gather(backend, [(state, FREE)] * 2)  # tasks inherit the pin
            during = set(await backend.engine.list_loras())
        after = set(await backend.engine.list_loras())
        return pinned, before, [inside, *spawned], during, after

    pinned, before, inside, during, after = runner.run(main())
    new_id = backend.lora_request.lora_int_id
    assert pinned == old_version and backend.policy_version == old_version + 1
    for thought in inside:  # same seed, same LoRA: the very thought sampled before the load
        assert thought.policy_version == old_version
        assert thought.token_ids == before.token_ids
        assert thought.logprobs == pytest.approx(before.logprobs, abs=1e-4)
    assert [r.policy_version for r in list(backend.records)[-3:]] == [old_version] * 3
    assert during == {old_id, new_id}  # its requests are done, the pin still holds it
    assert after == {new_id}
    unpinned = runner.run(backend.sample_thought(state, FREE))
    assert unpinned.policy_version == old_version + 1
    assert unpinned.logprobs != pytest.approx(before.logprobs, abs=1e-3)  # the new adapter


def test_a_closed_backend_refuses_requests(backend, runner, state):
    # Runs last: it shuts the session's engine down.
    backend.close()
    with pytest.raises(RuntimeError, match=f"^{re.escape(CLOSED)}$"):
        runner.run(backend.sample_thought(state, FREE))
    backend.close()  # closing twice is harmless
