"""Reset policies: uniform distribution, oracle, self-localisation, custom ones."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from thoughtmdp import PrefixState, Thought, ThoughtMDPError, Trajectory, UnknownNameError
from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.localization import parse_step_index, render_localizer_prompt
from thoughtmdp.episodes.reset_policies import (
    RESET_POLICIES,
    OracleReset,
    ResetContext,
    SelfLocalization,
    UniformReset,
    make_reset_policy,
)

TASK = ArithChainTask(num_steps=4, seed=0, size=20, test_size=5)
PROBLEM = TASK.get_problem("train/0")


def seed_chain(*texts):
    return Trajectory(PrefixState(PROBLEM.id, (1, 2)), tuple(Thought(t) for t in texts), reward=0.0)


def decide(policy, trajectory, backend=None, rng_seed=0):
    backend = backend or ScriptedBackend(None, lambda c, s: "")
    context = ResetContext(trajectory, TASK, backend, np.random.default_rng(rng_seed))
    return asyncio.run(policy.decide(context))


class EchoTokenizer:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_uniform_reset_is_uniform_over_thoughts():
    """Chi-square fit over 1..H_s (H_s = 5, 5000 draws; critical value 18.47 at p = 0.001)."""
    chain = seed_chain(*[f"t{i}" for i in range(5)])
    policy = UniformReset()
    rng = np.random.default_rng(123)
    draws = [
        asyncio.run(policy.decide(ResetContext(chain, TASK, None, rng))).reset_index
        for _ in range(5000)
    ]
    counts = np.bincount(draws, minlength=6)
    assert counts[0] == 0
    expected = 5000 / 5
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert chi2 < 18.47


def test_oracle_reset_uses_first_error_step():
    q = PROBLEM.payload
    a, b = q["operands"][0], q["operands"][1]
    first = f"{a}{q['ops'][0]}{b}={q['results'][0]}"
    wrong = f"{q['results'][0]}{q['ops'][1]}{q['operands'][2]}={q['results'][1] + 1}"
    decision = decide(OracleReset(), seed_chain(first, wrong, "x \\boxed{0}"))
    assert (decision.reset_index, decision.policy, decision.fallback) == (2, "oracle", None)


def test_oracle_without_a_wrong_step_falls_back():
    chain = seed_chain("thinking", "still thinking")  # truncated, no claims
    assert decide(OracleReset(fallback="skip"), chain).reset_index is None
    decision = decide(OracleReset(fallback="uniform"), chain)
    assert decision.reset_index in (1, 2)
    assert decision.fallback == "uniform"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("\\boxed{2}", (2, "ok")),
        ("The first slip is step 3.\n\\boxed{3}", (3, "ok")),
        ("\\boxed{ 1 }", (1, "ok")),
        ("\\boxed{Step 4}", (4, "ok")),
        ("\\boxed{2.}", (2, "ok")),
        ("\\boxed{1} no wait \\boxed{3}", (3, "ok")),
        ("\\boxed{0}", (None, "out_of_range")),
        ("\\boxed{5}", (None, "out_of_range")),
        ("\\boxed{two}", (None, "unparsable")),
        ("\\boxed{2, 3}", (None, "unparsable")),
        ("Step 2 is wrong", (None, "unparsable")),
        ("\\boxed{2", (None, "unparsable")),
        ("", (None, "unparsable")),
    ],
)
def test_parse_step_index_on_messy_answers(answer, expected):
    assert parse_step_index(answer, 4) == expected


def test_self_localisation_prompt_and_decision():
    prompts = []

    def localize(prompt):
        prompts.append(prompt)
        return "Looking again, \\boxed{2}"

    backend = ScriptedBackend(EchoTokenizer(), lambda c, s: "", localize=localize)
    chain = seed_chain("8+6=15", "15+5=20", "x \\boxed{20}")
    decision = decide(SelfLocalization(), chain, backend)
    assert (decision.reset_index, decision.parse_status, decision.raw_text) == (
        2,
        "ok",
        "Looking again, \\boxed{2}",
    )
    assert "Step 1: 8+6=15\nStep 2: 15+5=20\nStep 3: x \\boxed{20}" in prompts[0]
    assert f"Problem: {PROBLEM.question}" in prompts[0]
    assert "</thought>" not in prompts[0].split("Problem:")[1]
    assert "between 1 and 3" in prompts[0]


@pytest.mark.parametrize(("fallback", "expected_index"), [("skip", None), ("uniform", 3)])
def test_self_localisation_fallbacks(fallback, expected_index):
    backend = ScriptedBackend(EchoTokenizer(), lambda c, s: "", localize=lambda p: "\\boxed{7}")
    decision = decide(
        SelfLocalization(fallback=fallback), seed_chain("a", "b", "c"), backend, rng_seed=4
    )
    assert decision.parse_status == "out_of_range"
    assert decision.fallback == fallback
    if expected_index is None:
        assert decision.reset_index is None
    else:
        assert 1 <= decision.reset_index <= 3


def test_render_localizer_prompt_strips_whitespace():
    assert (
        render_localizer_prompt("q", [" a \n", "b"], "{num_steps}|{steps}")
        == "2|Step 1: a\nStep 2: b"
    )


def test_unknown_policy_and_bad_fallback():
    with pytest.raises(
        UnknownNameError, match=r"^unknown reset policy 'slef'\. Did you mean 'self'\?"
    ):
        make_reset_policy("slef")
    with pytest.raises(
        ThoughtMDPError, match=r"^fallback must be 'uniform', 'skip' or 'grpo', got 'random'$"
    ):
        make_reset_policy("self", fallback="random")
    assert {"none", "uniform", "self", "oracle", "least_confident"} <= set(RESET_POLICIES.names())


def test_custom_policy_through_entry_point(tmp_path):
    (tmp_path / "my_resets.py").write_text(
        textwrap.dedent(
            """
            from thoughtmdp.episodes.reset_policies import ResetPolicy
            from thoughtmdp.types import ResetDecision

            class Second(ResetPolicy):
                name = "second"
                async def decide(self, context):
                    return ResetDecision(min(2, context.seed_length), self.name)
            """
        )
    )
    dist = tmp_path / "my_resets-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-resets\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[thoughtmdp.reset_policies]\nsecond = my_resets:Second\n"
    )
    script = textwrap.dedent(
        """
        import asyncio
        from thoughtmdp.episodes.builder import EpisodeBuilder
        from thoughtmdp.agents.backends.scripted import ScriptedBackend
        from thoughtmdp.episodes.presets import episode_config
        from thoughtmdp.mdp.env import ThoughtMDPEnv
        from thoughtmdp.envs.arith_chain import ArithChainTask

        class Tok:
            def encode(self, text, add_special_tokens=False):
                return [ord(c) for c in text]
            def decode(self, ids):
                return "".join(map(chr, ids))

        task = ArithChainTask(num_steps=3, size=5, test_size=5)
        backend = ScriptedBackend(Tok(), lambda context, sampling: "1+1=3 \\\\boxed{3}")
        builder = EpisodeBuilder(task, backend, lambda: ThoughtMDPEnv(task, tokenizer=Tok()),
                                 episode_config(reset_policy="second"))
        episode = asyncio.run(builder.build("train/0", seed=0))
        print(builder.policy.name, [r.decision.reset_index for r in episode.resets])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"second \[1\]\n", out.stdout)
