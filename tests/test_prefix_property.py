"""Resetting to a prefix is the same as replaying its thoughts from the start."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtmdp import Thought, ThoughtMDPEnv

step_text = st.text(max_size=12)
final_text = st.builds(lambda s: f"{s} \\boxed{{{s}}}", st.sampled_from(["19", "20", "x"]))


def chains():
    """Up to 7 thoughts, the last one sometimes a final answer."""
    body = st.lists(step_text.filter(lambda t: "\\boxed{" not in t), max_size=6)
    return st.tuples(body, st.one_of(st.none(), final_text)).map(
        lambda pair: pair[0] + ([pair[1]] if pair[1] is not None else [])
    )


def run(env, thoughts, options):
    """Step ``thoughts`` after ``reset(options)``; record every observable."""
    obs, info = env.reset(options=options)
    records = [(obs, info)]
    for thought in thoughts:
        obs, reward, terminated, truncated, info = env.step(thought)
        records.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return records


@settings(max_examples=60, deadline=None)
@given(thoughts=chains(), cut=st.integers(min_value=0, max_value=7), problem=st.integers(0, 9))
def test_reset_to_prefix_equals_replay(tokenizer, thoughts, cut, problem):
    env = ThoughtMDPEnv("arith_chain", num_steps=2, seed=0, tokenizer=tokenizer, max_thoughts=5)
    replay = run(env, thoughts, {"problem": problem})
    cut = min(cut, len(replay) - 1)
    if cut > 0 and (replay[cut][2] or replay[cut][3]):
        cut -= 1  # a finished state is not a reset target
    state = env.get_state().prefix(cut)
    from_state = run(env, thoughts[cut:], {"prefix": state})
    from_texts = run(env, thoughts[cut:], {"problem": problem, "prefix": list(thoughts[:cut])})
    reached = (replay[cut][0], replay[cut][-1])  # (obs, info) of the state at the cut
    for restarted in (from_state, from_texts):
        assert restarted[0] == reached
        assert restarted[1:] == replay[cut + 1 :]


@settings(max_examples=30, deadline=None)
@given(ids=st.lists(st.lists(st.integers(0, 50_000), min_size=1, max_size=5), max_size=4))
def test_sampled_ids_survive_reset(tokenizer, ids):
    env = ThoughtMDPEnv("arith_chain", num_steps=2, seed=0, tokenizer=tokenizer)
    sampled = [Thought(f"step {i}", token_ids=tuple(t)) for i, t in enumerate(ids)]
    _, info = env.reset(options={"problem": 3, "prefix": sampled})
    prompt = info["prompt_token_ids"]
    assert info["prefix_token_ids"] == prompt + tuple(i for t in ids for i in t)
