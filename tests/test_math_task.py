"""Tests of the math task: loading presets and files, math-verify grading, the Gym env."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import thoughtmdp
from thoughtmdp.envs.math.task import MathTask, gold_answer
from thoughtmdp.errors import DatasetFieldError, DependencyNotInstalled, VerifierTimeout
from thoughtmdp.isolation import WorkerCrashed
from thoughtmdp.types import Problem

FIXTURES = Path(__file__).parent / "fixtures" / "math"
NUMINA = FIXTURES / "numinamath.jsonl"
ACEREASON = FIXTURES / "acereason.jsonl"
SLOW = r"\boxed{9^{9^{9}}}"  # sympy works on this for far longer than the time limit


@pytest.fixture(scope="module")
def task() -> Iterator[MathTask]:
    math_task = MathTask(NUMINA, preset="numinamath", timeout=1.0)
    yield math_task
    math_task.close()


def problem(gold: str) -> Problem:
    return Problem("t/0", "question", gold, "t")


# -- loading ------------------------------------------------------------------------------


def test_numinamath_preset_takes_the_boxed_part_of_the_solution(task: MathTask) -> None:
    problems = task.problems("train")
    assert [p.answer for p in problems] == ["12", r"\frac{1}{2}", "x^2+2x+1", r"2\sqrt{2}"]
    assert [p.id for p in problems] == ["train/0", "train/1", "train/2", "train/3"]
    assert problems[3].payload == {"source": "amc_aime", "line": 5}  # line 4 is a proof
    assert task.splits == ("train",)
    assert task.get_problem("train/1").question == r"Simplify $\frac{2}{4}$."


def test_acereason_preset_and_split_label() -> None:
    ace = MathTask(ACEREASON, preset="acereason", split="test")
    assert [p.answer for p in ace.problems("test")] == ["42", r"\frac{1}{2}", "x^2+1", "6"]
    assert ace.problems("test")[0].id == "test/0"
    with pytest.raises(ValueError, match="holds split 'test', not 'train'"):
        ace.problems("train")


def test_math_preset_keeps_level_and_type(tmp_path: Path) -> None:
    row = {
        "problem": "1+1?",
        "solution": r"Clearly $\boxed{2}$.",
        "level": "Level 1",
        "type": "Algebra",
    }
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (loaded,) = MathTask(path, preset="math").problems("train")
    assert loaded.answer == "2"
    assert loaded.payload == {"level": "Level 1", "type": "Algebra", "line": 1}


def test_explicit_keys_override_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    path.write_text(
        json.dumps({"problem": "q", "answer": "1", "final": "7"}) + "\n", encoding="utf-8"
    )
    (loaded,) = MathTask(path, preset="acereason", answer_key="final").problems("train")
    assert loaded.answer == "7"


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"known presets: \['acereason', 'math', 'numinamath'\]"):
        MathTask(NUMINA, preset="gsm9k")


def test_missing_field_names_file_line_and_field() -> None:
    pattern = r"bad_row\.jsonl, line 3: missing field 'problem'; the row has fields"
    with pytest.raises(DatasetFieldError, match=pattern):
        MathTask(FIXTURES / "bad_row.jsonl")
    with pytest.raises(
        DatasetFieldError, match=r"numinamath\.jsonl, line 1: missing field 'answer'"
    ):
        MathTask(NUMINA)


def test_limit_and_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in ACEREASON.read_text(encoding="utf-8").splitlines()]
    path = tmp_path / "ace.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "answer": str(r["answer"])} for r in rows]), path)
    loaded = MathTask(path, preset="acereason", limit=2).problems("train")
    assert [p.answer for p in loaded] == ["42", r"\frac{1}{2}"]


def test_dataset_names_and_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DependencyNotInstalled, match="pip install datasets"):
        MathTask("AI-MO/NuminaMath-CoT", preset="numinamath")
    with pytest.raises(FileNotFoundError):
        MathTask(tmp_path / "typo.jsonl")


def test_gold_answer_forms() -> None:
    assert gold_answer(r" \frac{1}{2} ") == r"\frac{1}{2}"
    assert gold_answer("$x^2+1$") == "x^2+1"
    assert gold_answer(r"\(3\)") == "3"
    assert gold_answer(r"So \boxed{1} no wait, $\boxed{\dfrac{3}{4}}$.") == r"\dfrac{3}{4}"


# -- scoring ------------------------------------------------------------------------------

GOLD_CASES = [
    # (gold as stored, an equivalent prediction, a wrong prediction)
    (r"\frac{1}{2}", "0.5", r"\frac{1}{3}"),
    (r"\frac12", r"\dfrac{1}{2}", "2"),
    ("x^2+1", "1+x^2", "x^2-1"),
    (r"$\frac{3}{4}$", "0.75", r"\frac{4}{3}"),
    (r"We get $3 \cdot 4 = 12$, so the answer is $\boxed{12}$.", "12.0", "13"),
    (r"2\sqrt{2}", r"\sqrt{8}", "2"),
    ("42", "42", "24"),
]


@pytest.mark.parametrize(("gold", "right", "wrong"), GOLD_CASES)
def test_gold_forms_accept_equivalent_and_reject_wrong(
    task: MathTask, gold: str, right: str, wrong: str
) -> None:
    good = task.score(problem(gold), ["thinking", rf"so the result is \boxed{{{right}}}"])
    assert good.reward == 1.0, good.info
    assert good.info["answer"] == right and "reason" not in good.info
    bad = task.score(problem(gold), [rf"so the result is \boxed{{{wrong}}}"])
    assert bad.reward == 0.0 and bad.info["reason"] == "wrong answer", bad.info


def test_only_the_final_thought_counts(task: MathTask) -> None:
    early = task.score(problem("12"), [r"\boxed{12}", "and that is all"])
    assert early.reward == 0.0 and early.info["reason"] == "no boxed answer"
    assert early.info["answer"] is None and early.info["gold"] == "12"
    last = task.score(problem("12"), [r"first \boxed{11}, corrected: \boxed{12}"])
    assert last.reward == 1.0
    assert task.score(problem("12"), []).info["reason"] == "no boxed answer"


def test_slow_verification_times_out_without_killing_the_worker(task: MathTask) -> None:
    task.score(problem("2"), [r"\boxed{2}"])
    pid = task._verifier.workers[0].pid
    score = task.score(problem("2"), [SLOW])
    assert score.reward == 0.0 and score.info["reason"] == "timeout"
    assert task._verifier.workers[0].pid == pid
    assert task.score(problem("2"), [r"\boxed{2}"]).reward == 1.0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (VerifierTimeout("too slow"), "timeout"),
        (WorkerCrashed("died (killed by signal SIGSEGV)"), "verifier error: WorkerCrashed: died"),
    ],
)
def test_verifier_failures_become_zero_rewards(
    task: MathTask, monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str
) -> None:
    calls: list[tuple[object, ...]] = []

    def fail(*args: object) -> tuple[bool, None]:
        calls.append(args)
        if args[:2] == ("1", "1"):  # the known-good check after repeated crashes passes
            return True, None
        raise error

    monkeypatch.setattr(task, "_verifier", fail)
    score = task.score(problem("2"), [r"\boxed{2}"])
    assert score.reward == 0.0 and score.info["reason"].startswith(reason)
    if isinstance(error, WorkerCrashed):  # retried once, then the known-good check
        assert [c[:2] for c in calls] == [("2", "2"), ("2", "2"), ("1", "1")]


def test_concurrent_threads_get_their_own_results(task: MathTask) -> None:
    cases = [
        (gold, ans, ans == right) for gold, right, wrong in GOLD_CASES for ans in (right, wrong)
    ]

    def run(case: tuple[str, str, bool]) -> float:
        return task.score(problem(case[0]), [rf"\boxed{{{case[1]}}}"]).reward

    with ThreadPoolExecutor(4) as pool:
        rewards = list(pool.map(run, cases))
    assert rewards == [1.0 if expected else 0.0 for _, _, expected in cases]


def test_ascore_does_not_block_the_event_loop(task: MathTask) -> None:
    async def main() -> tuple[int, list[float]]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        scores = await asyncio.gather(
            task.ascore(problem("2"), [SLOW]), task.ascore(problem("0.5"), [r"\boxed{\frac12}"])
        )
        ticker.cancel()
        return ticks, [s.reward for s in scores]

    ticks, rewards = asyncio.run(main())
    assert rewards == [0.0, 1.0]
    assert ticks >= 20  # the slow check takes about a second


# -- the Gymnasium environment ------------------------------------------------------------


def test_gym_env_runs_an_episode_and_passes_the_checker() -> None:
    assert "thoughtmdp/Math-v0" in thoughtmdp.ENV_IDS
    env = gymnasium.make("thoughtmdp/Math-v0", data=str(NUMINA), preset="numinamath")
    try:
        obs, info = env.reset(options={"problem": 0})
        assert info["problem_id"] == "train/0" and r"What is $3 \cdot 4$?" in obs["prompt"]
        obs, reward, terminated, truncated, info = env.step("3 times 4 is 12</thought>")
        assert (reward, terminated, truncated) == (0.0, False, False)
        obs, reward, terminated, truncated, info = env.step(r"So \boxed{12}</thought>")
        assert (reward, terminated, truncated) == (1.0, True, False)
        assert info["verifier"]["answer"] == "12"
        env.reset(options={"problem": 1})
        _, reward, terminated, _, info = env.step(r"\boxed{2}")
        assert (reward, terminated) == (0.0, True)
        assert info["verifier"]["reason"] == "wrong answer"
        check_env(env.unwrapped)
    finally:
        env.close()
