"""The paper's caps: prompts over ``max_prompt_tokens`` are left out and counted."""

from __future__ import annotations

import logging

import pytest

from thoughtmdp import ConfigError, ThoughtMDPEnv
from thoughtmdp.agents.process import within_prompt_cap
from thoughtmdp.settings.actor import ActorConfig


def env_with_prompt_lengths(tokenizer):
    env = ThoughtMDPEnv(
        "arith_chain", num_steps=4, operand_range=[1, 20], seed=0, tokenizer=tokenizer
    )
    lengths = sorted(len(env.encode_prompt(p)) for p in env.problems)
    return env, lengths


def test_problems_with_longer_prompts_are_left_out_and_counted(tokenizer, caplog):
    env, lengths = env_with_prompt_lengths(tokenizer)
    cap = lengths[-1] - 1  # leaves out the longest prompts
    expected = sum(n <= cap for n in lengths)
    assert 0 < expected < len(lengths)
    with caplog.at_level(logging.WARNING, logger="thoughtmdp.agents.process"):
        kept = within_prompt_cap(env, cap)
    assert len(kept) == expected
    assert all(len(env.encode_prompt(p)) <= cap for p in kept)
    assert f"{len(lengths) - expected} of {len(lengths)} problems have prompts over " in caplog.text


def test_no_cap_keeps_every_problem_and_an_empty_result_is_an_error(tokenizer):
    env, lengths = env_with_prompt_lengths(tokenizer)
    assert len(within_prompt_cap(env, None)) == len(lengths)
    with pytest.raises(ConfigError, match=r"^max_prompt_tokens: all \d+ problems of split"):
        within_prompt_cap(env, lengths[0] - 1)


@pytest.mark.parametrize("key", ["max_prompt_tokens", "max_total_tokens"])
def test_caps_must_be_positive(key):
    with pytest.raises(ConfigError, match=rf"^{key}: expected a positive number or null"):
        ActorConfig(**{key: 0})
    assert getattr(ActorConfig(**{key: None}), key) is None


def test_the_paper_caps_are_the_defaults():
    config = ActorConfig()
    assert (config.max_prompt_tokens, config.max_total_tokens) == (2048, 4096)
