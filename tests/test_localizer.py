"""The localiser prompt, ambiguous answers, the three fallbacks and the fallback warning."""

from __future__ import annotations

import asyncio
import logging
import re

import numpy as np
import pytest
from scripted_arith import OutcomeScript, make_env_factory, tag

from thoughtmdp import ConfigError, PrefixState, Thought, Trajectory
from thoughtmdp.agents.actor import Actor, FallbackWatch
from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.builder import EpisodeBuilder
from thoughtmdp.episodes.localization import parse_step_index
from thoughtmdp.episodes.metrics import episode_metrics
from thoughtmdp.episodes.presets import PRESETS, episode_config
from thoughtmdp.episodes.reset_policies import ResetContext, SelfLocalization
from thoughtmdp.settings.actor import ActorConfig
from thoughtmdp.types import Episode, ResetDecision, ResetRecord
from thoughtmdp.wire import decode, encode_episode

TASK = ArithChainTask(num_steps=4, seed=0, size=20, test_size=5)
PROBLEM = TASK.get_problem("train/0")  # answer "25"


def chain(*texts):
    return Trajectory(PrefixState(PROBLEM.id, (1, 2)), tuple(Thought(t) for t in texts), reward=0.0)


class EchoTokenizer:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))


def localize(answer, trajectory, **options):
    backend = ScriptedBackend(EchoTokenizer(), lambda c, s: "", localize=lambda p: answer)
    context = ResetContext(trajectory, TASK, backend, np.random.default_rng(0))
    return asyncio.run(SelfLocalization(**options).decide(context))


def test_prompt_ends_with_the_step_index_rule_after_the_chain():
    thoughts = ["8+6=14", "14+5=20", "20+3=23", "23+3=26 \\boxed{26}"]
    prompt = TASK.render_localizer_prompt(PROBLEM, thoughts)
    last_line = prompt.rstrip().splitlines()[-1]
    assert "\\boxed{N}" in last_line
    assert "step index" in last_line and "NOT the answer to the problem" in last_line
    assert "first step that cannot be justified" in last_line
    # problem, then the chain, then the rules
    problem_at = prompt.index(f"Problem: {PROBLEM.question}")
    chain_end = prompt.index("Step 4: 23+3=26 \\boxed{26}")
    assert problem_at < prompt.index("Step 1: 8+6=14") < chain_end < prompt.index("Answer format:")
    assert "between 1 and 4" in prompt[chain_end:]


@pytest.mark.parametrize(
    ("answer", "answers", "expected"),
    [
        ("\\boxed{3}", ["3"], (None, "ambiguous")),
        ("\\boxed{3}", [" $3.0$ "], (None, "ambiguous")),
        ("\\boxed{3}", ["25", "3"], (None, "ambiguous")),
        ("\\boxed{3}", ["4", "x"], (3, "ok")),
        ("\\boxed{Step 3}", ["3"], (3, "ok")),
        ("The first wrong step is step 3.\n\\boxed{3}", ["3"], (3, "ok")),
        ("Step 2 looks fine.\n\\boxed{3}", ["3"], (None, "ambiguous")),
        ("\\boxed{3} and step 3 again", ["3"], (None, "ambiguous")),  # after the box: no
        ("\\boxed{9}", ["9"], (None, "out_of_range")),
    ],
)
def test_boxed_number_equal_to_an_answer_is_ambiguous(answer, answers, expected):
    assert parse_step_index(answer, 4, answers) == expected


def test_localiser_echoing_the_chain_answer_falls_back():
    seed = chain("8+6=14", "bad", "\\boxed{2}")  # the chain's own answer is 2
    decision = localize("\\boxed{2}", seed, fallback="skip")
    assert (decision.reset_index, decision.parse_status, decision.fallback) == (
        None,
        "ambiguous",
        "skip",
    )
    named = localize("Step 2 is where it breaks.\n\\boxed{2}", seed, fallback="skip")
    assert (named.reset_index, named.parse_status, named.fallback) == (2, "ok", None)
    unchecked = localize("\\boxed{2}", seed, fallback="skip", check_answer_echo=False)
    assert (unchecked.reset_index, unchecked.parse_status) == (2, "ok")
    ambiguous = Episode(PROBLEM.id, (), (ResetRecord(seed, decision),))
    assert decode([bytes(f) for f in encode_episode(ambiguous, actor="a")]) == ambiguous


def test_localiser_echoing_the_reference_answer_falls_back():
    seed = chain(*[f"t{i}" for i in range(30)])  # no boxed answer; the reference is 25
    assert localize("\\boxed{25}", seed, fallback="skip").parse_status == "ambiguous"
    assert localize("\\boxed{24}", seed, fallback="skip").reset_index == 24


def build(tokenizer, outcomes, fallback, localiser="I cannot tell.", **config):
    task = ArithChainTask(num_steps=2, seed=0, size=50, test_size=10)
    backend = ScriptedBackend(
        tokenizer, OutcomeScript(task, outcomes), localize=lambda p: localiser
    )
    builder = EpisodeBuilder(
        task,
        backend,
        make_env_factory(task, tokenizer),
        episode_config(reset_policy_options={"fallback": fallback}, **config),
    )
    return asyncio.run(builder.build("train/0", seed=1))


def test_grpo_fallback_fills_the_base_group_with_the_seed_and_fresh_rollouts(tokenizer):
    episode = build(tokenizer, [1, 1, 0, 1, 1], "grpo")
    assert [g.kind for g in episode.groups] == ["base"]
    (base,) = episode.groups
    # draws 0, 1, 3, 4 and the seed 2 from phase one, then 5, 6, 7 sampled for the reset
    assert [tag(t) for t in base.trajectories] == [0, 1, 3, 4, 2, 5, 6, 7]
    assert base.rewards == (1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0)
    assert base.advantages[4] < 0 < base.advantages[0]
    (record,) = episode.resets
    assert record.seed_trajectory is base.trajectories[4]
    assert (record.decision.reset_index, record.decision.fallback) == (None, "grpo")
    assert record.decision.parse_status == "unparsable"
    assert episode.unused_tokens == ()
    metrics = episode_metrics([episode])
    assert metrics["reset/policy_fallback_rate"] == 1.0
    assert metrics["reset/policy_fallback/grpo"] == 1.0
    assert metrics["reset/policy_fallback/uniform"] == 0.0
    assert metrics["reset/count"] == 0.0
    assert decode([bytes(f) for f in encode_episode(episode, actor="a")]) == episode


def test_grpo_fallback_keeps_the_episode_size_of_every_preset(tokenizer):
    two = build(tokenizer, [0, 1, 0], "grpo", **PRESETS["2x4"])
    assert [g.kind for g in two.groups] == ["base"]
    assert [tag(t) for t in two.groups[0].trajectories] == [0, 3, 4, 5, 2, 6, 7, 8]
    eight = build(tokenizer, [0], "grpo", **PRESETS["1x8"])
    assert len(eight.groups[0].trajectories) == 8


@pytest.mark.parametrize(
    ("fallback", "kinds", "sizes"),
    [("skip", ["base"], [4]), ("uniform", ["base", "reset"], [4, 4])],
)
def test_other_fallbacks_keep_their_shape(tokenizer, fallback, kinds, sizes):
    episode = build(tokenizer, [1, 1, 0, 1, 1], fallback)
    assert [g.kind for g in episode.groups] == kinds
    assert [len(g.trajectories) for g in episode.groups] == sizes
    assert episode_metrics([episode])[f"reset/policy_fallback/{fallback}"] == 1.0


def test_a_named_step_needs_no_fallback(tokenizer):
    episode = build(tokenizer, [1, 1, 0, 1, 1], "grpo", localiser="\\boxed{1}")
    assert [g.kind for g in episode.groups] == ["base", "reset"]
    assert episode_metrics([episode])["reset/policy_fallback_rate"] == 0.0


def fell_back(n):
    return [ResetDecision(None, "self", "??", "unparsable", "uniform")] * n


def ok(n):
    return [ResetDecision(2, "self", "\\boxed{2}", "ok")] * n


def test_fallback_warning_past_the_threshold(caplog):
    watch = FallbackWatch(threshold=0.2, window=10)
    with caplog.at_level(logging.WARNING, logger="thoughtmdp.agents.actor"):
        assert not watch.observe(ok(8) + fell_back(2))  # 2 of 10: at the threshold
        assert watch.observe(fell_back(1))  # 3 of 10
        assert not watch.observe(fell_back(3))  # still over: no repeat
        assert not watch.observe(ok(10))  # back under: re-armed
        assert watch.observe(fell_back(5))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert re.match(
        r"^reset policy 'self' fell back on 3 of the last 10 seed chains \(30%, over "
        r"fallback_warn_rate 20%\): fallbacks \{'uniform': 3\}, localiser answers "
        r"\{'unparsable': 3\}",
        warnings[0].getMessage(),
    )


def test_actor_warns_when_the_localiser_keeps_failing(tokenizer, caplog):
    task = ArithChainTask(num_steps=2, seed=0, size=50, test_size=10)
    backend = ScriptedBackend(tokenizer, OutcomeScript(task, [0] * 40), localize=lambda p: "?")
    builder = EpisodeBuilder(task, backend, make_env_factory(task, tokenizer), episode_config())
    sent = []

    class Sender:
        latest = None

        async def send(self, episode):
            sent.append(episode)

    actor = Actor(builder, Sender(), iter(["train/0"] * 4), fallback_warn_rate=0.5)
    actor.fallback_watch.recent = type(actor.fallback_watch.recent)(maxlen=3)

    async def run():
        for index in range(3):
            await actor._episode("train/0", index)

    with caplog.at_level(logging.WARNING, logger="thoughtmdp.agents.actor"):
        asyncio.run(run())
    assert len(sent) == 3
    assert [r.getMessage()[:48] for r in caplog.records] == [
        "reset policy 'self' fell back on 3 of the last 3"
    ]


def test_fallback_warn_rate_is_checked():
    with pytest.raises(ConfigError, match=r"^fallback_warn_rate: expected 0\.\.1, got 1\.5$"):
        ActorConfig(fallback_warn_rate=1.5)
