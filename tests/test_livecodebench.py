"""The LiveCodeBench task: loading and decoding rows, filters, test splits, env and rewards."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pickle
import re
import sys
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import thoughtmdp
from thoughtmdp.envs.livecodebench import data as livecodebench_data
from thoughtmdp.envs.livecodebench.data import UnsafePickleError, decode_tests, unpickle_str
from thoughtmdp.envs.livecodebench.grading import CodeTest, Verdict
from thoughtmdp.envs.livecodebench.problems import filter_problems, load_problems, split_tests
from thoughtmdp.envs.livecodebench.task import LiveCodeBenchTask, has_code_block
from thoughtmdp.errors import (
    DatasetFieldError,
    DependencyNotInstalled,
    StepOracleUnavailable,
    VerifierUnavailable,
)
from thoughtmdp.types import PrefixState, Trajectory

FIXTURES = Path(__file__).parent / "fixtures" / "livecodebench"
PROBLEMS = FIXTURES / "problems.jsonl"
ADD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
TWO_SUM = (
    "```python\nclass Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
    "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
    "                return [seen[target - x], i]\n            seen[x] = i\n```"
)


@pytest.fixture(scope="module")
def task() -> Iterator[LiveCodeBenchTask]:
    lcb = LiveCodeBenchTask(PROBLEMS, test_timeout=2.0)
    yield lcb
    lcb.close()


def fixture_rows() -> list[dict]:
    return [json.loads(line) for line in PROBLEMS.read_text(encoding="utf-8").splitlines()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def packed(payload: bytes) -> str:
    return base64.b64encode(zlib.compress(payload)).decode("ascii")


# -- loading and decoding -----------------------------------------------------------------


def test_fixture_rows_decode_both_test_layouts() -> None:
    problems = load_problems(PROBLEMS)
    assert [p.question_id for p in problems] == [
        "abc300_a", "lc3100", "cf1990_b", "lc3300", "abc385_c", "abc400_a", "abc410_a",
    ]  # fmt: skip
    add, two_sum, _, min_max = problems[:4]
    assert add.func_name is None and two_sum.func_name == "twoSum"
    assert len(add.public_tests) == 2 and len(add.private_tests) == 6  # compressed
    assert add.private_tests[1] == CodeTest("-5 5\n", "0\n", "stdin")
    assert min_max.private_tests[0] == CodeTest("[5]", "[5, 5]", "functional")  # plain JSON
    assert two_sum.starter_code.startswith("class Solution:")
    assert add.contest_date.isoformat() == "2023-06-10T00:00:00"
    assert (add.platform, add.difficulty, add.line) == ("atcoder", "easy", 1)
    assert add.tests == add.public_tests + add.private_tests


def test_test_fields_may_already_be_lists() -> None:
    tests = decode_tests([{"input": "1", "output": "2", "testtype": "stdin"}], "f", 1, "x")
    assert tests == (CodeTest("1", "2", "stdin"),)


def test_a_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    row = {**fixture_rows()[0], "private_test_cases": packed(pickle.dumps(Exploit()))}
    path = write_rows(tmp_path / "evil.jsonl", [row])
    message = (
        f"{path}, line 1: field 'private_test_cases': the pickled tests refers to "
        f"{os.system.__module__}.system; only a pickled str is accepted, so this row was not "
        "written by LiveCodeBench's exporter: check where the file came from"
    )
    with pytest.raises(UnsafePickleError, match=f"^{re.escape(message)}$"):
        load_problems(path)
    assert not marker.exists()


def test_a_pickle_of_anything_but_a_str_is_refused() -> None:
    with pytest.raises(UnsafePickleError, match="^holds a list, not a str$"):
        unpickle_str(pickle.dumps(["[]"]))
    with pytest.raises(UnsafePickleError, match="^refers to builtins.str$"):
        unpickle_str(pickle.dumps(str))  # even a harmless global is refused


def test_damaged_compressed_fields_name_file_line_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = {**fixture_rows()[0], "private_test_cases": "not json, not base64!"}
    path = write_rows(tmp_path / "bad.jsonl", [row])
    message = (
        f"{path}, line 1: field 'private_test_cases' is neither JSON nor base64 of "
        "zlib-compressed pickled JSON; export the row again from the LiveCodeBench dataset"
    )
    with pytest.raises(DatasetFieldError, match=f"^{re.escape(message)}$"):
        load_problems(path)
    monkeypatch.setattr(livecodebench_data, "MAX_DECOMPRESSED", 16)
    with pytest.raises(DatasetFieldError, match="inflates past 16 bytes; refusing it"):
        load_problems(PROBLEMS)


def test_missing_fields_and_bad_call_tests_name_file_line_and_field(tmp_path: Path) -> None:
    rows = fixture_rows()[:2]
    del rows[1]["metadata"]
    path = write_rows(tmp_path / "missing.jsonl", rows)
    with pytest.raises(
        DatasetFieldError, match=r"missing\.jsonl, line 2: missing field 'metadata'"
    ):
        load_problems(path)
    rows = fixture_rows()[1:2]
    rows[0]["public_test_cases"] = json.dumps([{"input": "[1,2", "output": "[]"}])
    path = write_rows(tmp_path / "call.jsonl", rows)
    pattern = r"call\.jsonl, line 1: field 'public_test_cases', test 0: a call-based test needs"
    with pytest.raises(DatasetFieldError, match=pattern):
        load_problems(path)


def test_repeated_ids_and_hub_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = fixture_rows()[0]
    with pytest.raises(ValueError, match="line 2: question_id 'abc300_a' repeats line 1"):
        load_problems(write_rows(tmp_path / "twice.jsonl", [row, row]))
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DependencyNotInstalled, match="pip install datasets"):
        load_problems("livecodebench/code_generation_lite")


# -- filters ------------------------------------------------------------------------------


def ids(problems: list) -> list[str]:
    return [p.question_id for p in problems]


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("release_v1", ["abc300_a"]),
        ("release_v2", ["abc300_a", "lc3100"]),
        ("v2", ["lc3100"]),
        ("v2_v4", ["lc3100", "cf1990_b", "lc3300"]),
        ("v5_v6", ["abc385_c", "abc400_a"]),
        ("release_v6", ["abc300_a", "lc3100", "cf1990_b", "lc3300", "abc385_c", "abc400_a"]),
        ("release_latest", ["abc300_a", "lc3100", "cf1990_b", "lc3300", "abc385_c", "abc400_a",
                            "abc410_a"]),
    ],
)  # fmt: skip
def test_release_versions(release: str, expected: list[str]) -> None:
    assert ids(filter_problems(load_problems(PROBLEMS), release_version=release)) == expected


def test_dates_difficulty_platform_and_boundaries(tmp_path: Path) -> None:
    problems = load_problems(PROBLEMS)
    window = filter_problems(problems, start_date="2024-07-05", end_date="2024-12-01")
    assert ids(window) == ["cf1990_b", "lc3300", "abc385_c"]  # both ends included
    assert ids(filter_problems(problems, difficulty="medium")) == ["cf1990_b", "lc3300"]
    assert ids(filter_problems(problems, platform=["LeetCode"])) == ["lc3100", "lc3300"]
    shifted = {1: date(2024, 5, 1)}
    assert ids(filter_problems(problems, release_version="v1", release_ends=shifted)) == [
        "abc300_a",
        "lc3100",
    ]
    with pytest.raises(ValueError, match="unknown release version 'v7x'; use release_vN"):
        filter_problems(problems, release_version="v7x")
    with pytest.raises(ValueError, match="start_date must be an ISO date"):
        filter_problems(problems, start_date="May 2024")


def test_versions_can_come_from_a_row_field(tmp_path: Path) -> None:
    rows = [{**r, "release": f"v{6 - i}"} for i, r in enumerate(fixture_rows()[:3])]
    problems = load_problems(write_rows(tmp_path / "tagged.jsonl", rows), version_field="release")
    assert ids(filter_problems(problems, release_version="v5")) == ["lc3100"]


# -- test splits --------------------------------------------------------------------------


def test_split_is_deterministic_and_per_problem() -> None:
    problems = load_problems(PROBLEMS)
    add = problems[0]
    train, held = split_tests(add, 0.5, seed=0)
    assert len(held) == 3 and len(train) == 2 + 3
    assert train[:2] == add.public_tests  # public tests always train
    assert split_tests(add, 0.5, seed=0) == (train, held)
    alone = load_problems(PROBLEMS)[0]
    assert split_tests(alone, 0.5, seed=0) == (train, held)  # same without the others
    assert set(held) | set(train[2:]) == set(add.private_tests)
    seeds = {split_tests(add, 0.5, seed=s)[1] for s in range(8)}
    assert len(seeds) > 1  # the seed picks another split
    assert split_tests(add, 0.0)[1] == () and split_tests(add, 1.0)[1] == add.private_tests


def test_split_keeps_one_training_test_and_checks_the_fraction() -> None:
    add = load_problems(PROBLEMS)[0]
    no_public = type(add)(**{**add.__dict__, "public_tests": ()})
    train, held = split_tests(no_public, 1.0)
    assert len(train) == 1 and len(held) == 5
    with pytest.raises(ValueError, match=r"^heldout_fraction must be in \[0, 1\], got 1.5$"):
        split_tests(add, 1.5)


# -- the task and its env -----------------------------------------------------------------


def test_prompt_follows_the_starter_code_or_stdin_layout(task: LiveCodeBenchTask) -> None:
    add, two_sum = task.problems("test")[:2]
    prompt = task.render_prompt(add)
    assert "### Question:\nGiven integers A and B on one line, print A+B." in prompt
    assert "Read the input from stdin" in prompt and "# YOUR CODE HERE" in prompt
    assert "```python\nclass Solution:\n    def twoSum" in task.render_prompt(two_sum)
    assert "</thought>" in prompt


def test_gym_env_runs_an_episode_and_passes_the_checker() -> None:
    assert thoughtmdp.ENV_IDS["thoughtmdp/LiveCodeBench-v0"] == "livecodebench"
    env = gymnasium.make("thoughtmdp/LiveCodeBench-v0", data=str(PROBLEMS), test_timeout=2.0)
    try:
        obs, info = env.reset(options={"problem": 0})
        assert info["problem_id"] == "abc300_a" and "### Question:" in obs["prompt"]
        step = env.step("Read two integers and add them.</thought>")
        assert step[1:4] == (0.0, False, False)
        obs, reward, terminated, truncated, info = env.step(ADD + "</thought>")
        assert (reward, terminated, truncated) == (1.0, True, False)
        assert info["verifier"]["train_passed"] == info["verifier"]["train_total"] == 5
        assert info["verifier"]["isolation"]["network"] == "namespace"
        check_env(env.unwrapped)
    finally:
        env.close()


def test_a_sandbox_that_cannot_start_stops_the_episode_instead_of_scoring_zero() -> None:
    from thoughtmdp.envs.sandbox.jobs import SandboxConfig

    broken = LiveCodeBenchTask(PROBLEMS, sandbox=SandboxConfig(python="/nonexistent/python"))
    env = thoughtmdp.ThoughtMDPEnv(broken)
    try:
        env.reset(options={"problem": 0})
        with pytest.raises(VerifierUnavailable, match="could not start the sandbox child"):
            env.step(ADD + "</thought>")
    finally:
        env.close()
        broken.close()


def test_reward_is_the_share_of_training_tests_passed(task: LiveCodeBenchTask) -> None:
    add = task.get_problem("abc300_a")
    train = add.payload["train_tests"]
    score = task.score(add, ["```python\nprint(3)\n```"])
    expected = sum(t.output.strip() == "3" for t in train) / len(train)
    assert score.reward == pytest.approx(expected) and 0 < expected < 1
    assert score.info["train_verdicts"].count("wrong_answer") == len(train) - 1
    two_sum = task.get_problem("lc3100")
    assert task.score(two_sum, ["plan", TWO_SUM]).reward == 1.0


def test_no_code_block_is_a_zero_reward(task: LiveCodeBenchTask) -> None:
    add = task.get_problem("abc300_a")
    score = task.score(add, ["I would add them."])
    assert score.reward == 0.0 and score.info["reason"] == "no code block"
    assert task.score(add, []).info["reason"] == "no code block"
    assert has_code_block(ADD) and not has_code_block("```python\nprint(1)")
    assert task.is_final(ADD) and not task.is_final("thinking")


def test_evaluate_reports_held_out_verdicts(task: LiveCodeBenchTask) -> None:
    add = task.get_problem("abc300_a")
    good = task.evaluate(add, "a, b = map(int, input().split())\nprint(a + b)")
    assert good.reward == 1.0 and good.heldout_passed
    assert good.info()["heldout_passed"] and good.info()["heldout_total"] == 3
    public = {t.input: t.output for t in add.payload["train_tests"]}
    cheat = "s = input()\nprint(" + repr(public) + ".get(s + '\\n', '0'))"
    cheated = task.evaluate(add, cheat)
    assert cheated.reward == 1.0 and not cheated.heldout_passed
    assert Verdict.WRONG_ANSWER in [r.verdict for r in cheated.heldout.results]
    assert task.evaluate(add, None).train.total == 5


def test_no_step_oracle_and_one_split(task: LiveCodeBenchTask) -> None:
    with pytest.raises(StepOracleUnavailable):
        task.first_error_step(Trajectory(PrefixState("abc300_a"), ()))
    with pytest.raises(ValueError, match="holds split 'test', not 'train'"):
        task.problems("train")
    small = LiveCodeBenchTask(PROBLEMS, limit=2, release_version="release_v6", split="train")
    assert [p.id for p in small.problems("train")] == ["abc300_a", "lc3100"]
    with pytest.raises(ValueError, match="no problem is left after the filters"):
        LiveCodeBenchTask(PROBLEMS, difficulty="impossible")


def test_ascore_does_not_block_the_event_loop(task: LiveCodeBenchTask) -> None:
    add = task.get_problem("abc300_a")
    slow = ADD.replace("a, b =", "import time\ntime.sleep(0.5)\na, b =")

    async def main() -> tuple[int, list[float]]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        scores = await asyncio.gather(task.ascore(add, [slow]), task.ascore(add, [ADD]))
        ticker.cancel()
        return ticks, [s.reward for s in scores]

    ticks, rewards = asyncio.run(main())
    assert rewards == [1.0, 1.0]
    assert ticks >= 20
