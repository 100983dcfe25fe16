"""The Thought MDP env: Gymnasium contract, episodes, caps, errors, token-exact states."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import thoughtmdp
from thoughtmdp import (
    EpisodeFinishedError,
    InvalidPrefixError,
    PrefixState,
    Problem,
    Score,
    Thought,
    ThoughtMDPEnv,
    UnknownNameError,
    VerifiableTask,
)

RIGHT = "8+6=14</thought>", "14+5=19 \\boxed{19}</thought>"


def arith_env(**kwargs) -> ThoughtMDPEnv:
    return ThoughtMDPEnv("arith_chain", num_steps=2, seed=0, **kwargs)


class ListTask(VerifiableTask):
    """Two fixed problems; scoring behaviour chosen per test."""

    name = "list_task"

    def __init__(self, reward: float | Exception = 1.0) -> None:
        super().__init__("Q: {question}\n")
        self.reward = reward

    def problems(self, split: str) -> Sequence[Problem]:
        return [Problem(f"{split}/{i}", f"question {i}", "1", split) for i in range(2)]

    def score(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        if isinstance(self.reward, Exception):
            raise self.reward
        return Score(self.reward, {"n": len(thoughts)})


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("thoughtmdp/ArithChain-v0", {"num_steps": 3, "seed": 1}),
        ("thoughtmdp/ReasoningGym-v0", {"dataset": "basic_arithmetic", "size": 20}),
    ],
)
def test_registered_ids_pass_check_env(env_id, kwargs):
    env = gymnasium.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert info["h"] == 0
    env.close()


def test_async_vector_env_steps_each_copy():
    envs = gymnasium.make_vec(
        "thoughtmdp/ArithChain-v0",
        num_envs=2,
        vectorization_mode="async",
        vector_kwargs={"shared_memory": False},
        num_steps=2,
        seed=0,
    )
    try:
        obs, info = envs.reset(seed=0, options={"problem": 0})
        assert obs["thoughts"] == ((), ())
        obs, reward, terminated, truncated, info = envs.step(list(RIGHT[:1]) * 2)
        assert obs["thoughts"] == (("8+6=14",), ("8+6=14",))
        obs, reward, terminated, truncated, info = envs.step([RIGHT[1], "14+5=20 \\boxed{20}"])
        assert reward.tolist() == [1.0, 0.0]
        assert terminated.tolist() == [True, True]
    finally:
        envs.close()


def test_episode_rewards_zero_until_final_answer():
    env = arith_env()
    obs, info = env.reset(options={"problem": 0})
    assert obs["prompt"].endswith("Q: 8+6+5\n")
    assert info == {"problem_id": "train/0", "h": 0}
    obs, reward, terminated, truncated, info = env.step(RIGHT[0])
    assert (reward, terminated, truncated, info["h"]) == (0.0, False, False, 1)
    obs, reward, terminated, truncated, info = env.step(RIGHT[1])
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert obs["thoughts"] == ("8+6=14", "14+5=19 \\boxed{19}")
    assert info["verifier"] == {"answer": "19", "gold": "19", "format_ok": True}


def test_wrong_answer_scores_zero_and_any_unicode_is_a_legal_thought():
    env = arith_env()
    obs, _ = env.reset(options={"problem": 0})
    obs, reward, terminated, *_ = env.step("λ→中文 ∑ 😀")
    assert env.observation_space.contains(obs)
    assert env.action_space.contains("λ→中文 ∑ 😀")
    obs, reward, terminated, *_ = env.step("\\boxed{20}")
    assert (reward, terminated) == (0.0, True)


def test_truncates_at_max_thoughts_with_zero_reward():
    env = arith_env(max_thoughts=3)
    env.reset(options={"problem": 0})
    flags = [env.step("thinking")[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(EpisodeFinishedError, match=r"^the episode has ended; call reset\(\)"):
        env.step("more")


def test_truncates_at_token_budget(tokenizer):
    env = arith_env(tokenizer=tokenizer, max_total_tokens=25)
    env.reset(options={"problem": 0})
    # each thought is 2 characters + the 10-character delimiter = 12 tokens
    assert env.step("ab")[3] is False
    assert env.step("cd")[3] is False
    assert env.step("ef")[3] is True


def test_a_rollout_never_samples_past_the_token_budget(tokenizer):
    from thoughtmdp.agents.backends.scripted import ScriptedBackend
    from thoughtmdp.backend import SamplingParams
    from thoughtmdp.episodes.rollout import rollout

    env = arith_env(tokenizer=tokenizer, max_total_tokens=25, max_thoughts=10)
    backend = ScriptedBackend(tokenizer, lambda context, sampling: "abcdefgh")  # 18 tokens
    trajectory = asyncio.run(rollout(env, backend, env.problems[0].id, SamplingParams()))
    lengths = [len(t.token_ids) for t in trajectory.thoughts]
    assert lengths == [18, 7]  # the second thought is cut to the 7 tokens left, not 18
    assert trajectory.truncated and trajectory.reward == 0.0
    assert env.tokens_left() == 0


def test_non_string_action_raises_type_error():
    env = arith_env()
    env.reset()
    with pytest.raises(
        TypeError, match=r"^action must be a str or a thoughtmdp\.Thought, got int$"
    ):
        env.step(3)


def test_step_before_reset_raises():
    with pytest.raises(EpisodeFinishedError, match=r"call reset\(\) before step\(\)"):
        arith_env().step("x")


def test_problem_option_by_index_and_id():
    env = arith_env()
    assert env.reset(options={"problem": 5})[1]["problem_id"] == "train/5"
    assert env.reset(options={"problem": "test/2"})[1]["problem_id"] == "test/2"
    assert env.problem == env.task.get_problem("test/2")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"problem": 10_000}, ValueError, "reset option 'problem' = 10000 is out of range"),
        ({"problem": 1.5}, TypeError, "reset option 'problem' must be an int index or a str id"),
        ({"problem": "train/x"}, UnknownNameError, "task 'arith_chain' has no problem 'train/x'"),
        ({"problme": 1}, ValueError, "unknown reset option(s) ['problme']"),
        ({"prefix": "8+6=14"}, TypeError, "reset option 'prefix' must be a PrefixState"),
        ({"prefix": [1]}, TypeError, "prefix must be a str or a thoughtmdp.Thought, got int"),
        (
            {"problem": 1, "prefix": PrefixState("train/0")},
            InvalidPrefixError,
            "prefix belongs to problem 'train/0', not 'train/1'",
        ),
        ({"prefix": list(RIGHT)}, InvalidPrefixError, "prefix of 2 thoughts is already finished"),
    ],
)
def test_bad_reset_options_raise_clear_errors(options, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        arith_env().reset(options=options)


def test_reset_to_prefix_keeps_sampled_token_ids(tokenizer):
    env = arith_env(tokenizer=tokenizer)
    sampled = Thought(
        "8+6=14", token_ids=(7, 8, 9, 2), logprobs=(-0.1, -0.2, -0.3, -0.4), policy_version=3
    )
    prompt_ids = (11, 12, 13)
    obs, info = env.reset(options={"prefix": PrefixState("train/0", prompt_ids, (sampled,))})
    assert info["prompt_token_ids"] == prompt_ids
    assert info["prefix_token_ids"] == (11, 12, 13, 7, 8, 9, 2)
    assert env.get_state().thoughts == (sampled,)
    obs, reward, terminated, truncated, info = env.step("x")
    assert info["prefix_token_ids"][7:] == tuple(tokenizer.encode("x</thought>"))


def test_text_prefix_is_tokenised_with_the_delimiter(tokenizer):
    env = arith_env(tokenizer=tokenizer)
    obs, info = env.reset(options={"problem": 0, "prefix": ["8+6=14</thought>"]})
    prompt = tokenizer.encode(obs["prompt"])
    assert info["prompt_token_ids"] == tuple(prompt)
    assert info["prefix_token_ids"] == tuple(prompt + tokenizer.encode("8+6=14</thought>"))
    assert obs["thoughts"] == ("8+6=14",)


def test_get_state_and_set_state_round_trip():
    env = arith_env()
    env.reset(options={"problem": 0})
    env.step(RIGHT[0])
    saved = env.get_state()
    env.step("14+5=20 \\boxed{20}")
    env.set_state(saved)
    assert env.get_state() == saved
    assert env.step(RIGHT[1])[1] == 1.0
    env.set_state(PrefixState("test/1"))
    assert env.problem.id == "test/1"
    with pytest.raises(TypeError, match=r"^set_state expects a PrefixState, got tuple$"):
        env.set_state(("train/0",))


def test_verifier_crash_is_zero_reward_with_reason():
    env = ThoughtMDPEnv(ListTask(reward=RuntimeError("boom")))
    env.reset(options={"problem": 0})
    _, reward, terminated, _, info = env.step("\\boxed{1}")
    assert (reward, terminated) == (0.0, True)
    assert info["verifier"] == {"error": "RuntimeError: boom"}


def test_reward_outside_unit_interval_is_rejected():
    env = ThoughtMDPEnv(ListTask(reward=2.0))
    env.reset(options={"problem": 0})
    _, reward, _, _, info = env.step("\\boxed{1}")
    assert reward == 0.0
    assert info["verifier"]["error"] == "verifier returned reward 2.0 outside [0, 1]"


def test_render_ansi_lists_thoughts():
    env = ThoughtMDPEnv(ListTask(), render_mode="ansi")
    env.reset(options={"problem": 1})
    env.step("first")
    assert env.render() == "Q: question 1\n[1] first\n"


def test_constructor_validates_arguments():
    with pytest.raises(
        ValueError, match=r"^task 'list_task' has splits \('train', 'test'\), not 'dev'$"
    ):
        ThoughtMDPEnv(ListTask(), split="dev")
    with pytest.raises(TypeError, match=r"need a task name, not an object"):
        ThoughtMDPEnv(ListTask(), num_steps=3)
    with pytest.raises(ValueError, match=r"^max_thoughts must be at least 1, got 0$"):
        ThoughtMDPEnv(ListTask(), max_thoughts=0)


def test_unknown_env_id_lists_known_ids():
    message = (
        "unknown env id 'thoughtmdp/ArithChain-v1'. Did you mean 'thoughtmdp/ArithChain-v0'? "
        "Known ids: thoughtmdp/ArithChain-v0, thoughtmdp/HardStepChain-v0, "
        "thoughtmdp/LiveCodeBench-v0, thoughtmdp/Math-v0, thoughtmdp/ReasoningGym-v0"
    )
    with pytest.raises(UnknownNameError, match=f"^{re.escape(message)}$"):
        thoughtmdp.make("thoughtmdp/ArithChain-v1")


def test_reset_without_problem_is_seeded():
    env = arith_env()
    first = env.reset(seed=7)[1]["problem_id"]
    assert env.reset(seed=7)[1]["problem_id"] == first
    ids = {env.reset()[1]["problem_id"] for _ in range(20)}
    assert len(ids) > 1
    assert np.all([i.startswith("train/") for i in ids])
