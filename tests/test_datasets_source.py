r"""Hugging Face datasets as task data: folders written by ``save_to_disk``.

The ``math`` env (``thoughtmdp/Math-v0``) and the ``qa`` task read a ``Dataset`` folder and
a split of a ``DatasetDict`` folder, built here in ``tmp_path``. A dataset named on the hub
goes through ``datasets.load_dataset`` instead; that path needs the network, which tests
never use, so it is covered only with a stand-in ``load_dataset`` in ``tests/test_data.py``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium
import pytest

from thoughtmdp.data import DataFormatError, is_saved_dataset, load_hf_dataset
from thoughtmdp.envs.math.qa import QATask
from thoughtmdp.envs.math.task import MathTask
from thoughtmdp.errors import DatasetFieldError, DependencyNotInstalled
from thoughtmdp.mdp.task import make_task

datasets = pytest.importorskip("datasets")

ROWS = {
    "problem": [r"What is $3 \cdot 4$?", r"Simplify $\frac{2}{4}$."],
    "solution": [r"$3 \cdot 4 = \boxed{12}$.", r"Halve both: $\boxed{\frac{1}{2}}$."],
    "level": ["Level 1", "Level 5"],
}
YES_NO = {"question": ["Is ice cold?", "Is fire cold?"], "answer": [True, False]}


@pytest.fixture(autouse=True)
def quiet_progress() -> Iterator[None]:
    datasets.disable_progress_bars()  # save_to_disk draws one bar per shard otherwise
    yield
    datasets.enable_progress_bars()


@pytest.fixture
def saved_dict(tmp_path: Path) -> Path:
    """A ``DatasetDict`` folder with a ``train`` and a ``test`` split of MATH rows."""
    folder = tmp_path / "math_dict"
    train = datasets.Dataset.from_dict(ROWS)
    test = datasets.Dataset.from_dict({k: v[:1] for k, v in ROWS.items()})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    return folder


def test_saved_folders_are_recognised(tmp_path: Path, saved_dict: Path) -> None:
    single = tmp_path / "single"
    datasets.Dataset.from_dict(YES_NO).save_to_disk(str(single))
    assert is_saved_dataset(saved_dict) and is_saved_dataset(single)
    assert is_saved_dataset(saved_dict / "train")  # a split's folder is a Dataset folder
    assert not is_saved_dataset(tmp_path) and not is_saved_dataset(tmp_path / "absent")


def test_math_env_reads_a_split_of_a_saved_dataset_dict(saved_dict: Path) -> None:
    env = gymnasium.make("thoughtmdp/Math-v0", data=str(saved_dict), preset="math")
    try:
        task = env.unwrapped.task
        assert [p.answer for p in task.problems("train")] == ["12", r"\frac{1}{2}"]
        assert task.problems("train")[1].payload == {"level": "Level 5", "line": 2}
        obs, _ = env.reset(options={"problem": 0})
        assert r"What is $3 \cdot 4$?" in obs["prompt"]
        _, reward, terminated, _, info = env.step(r"So \boxed{12}")
        assert (reward, terminated) == (1.0, True)
        env.reset(options={"problem": 1})
        _, reward, terminated, _, info = env.step(r"So \boxed{2}")
        assert (reward, terminated) == (0.0, True)
        assert info["verifier"]["reason"] == "wrong answer"
    finally:
        env.close()


def test_math_task_picks_the_split_and_names_a_missing_one(saved_dict: Path) -> None:
    task = MathTask(saved_dict, preset="math", split="test")
    try:
        assert [p.id for p in task.problems("test")] == ["test/0"]
    finally:
        task.close()
    message = (
        f"{saved_dict}: the saved DatasetDict has no split 'validation'; its splits are "
        "['test', 'train']; set split= to one of them"
    )
    with pytest.raises(DataFormatError, match=f"^{re.escape(message)}$"):
        MathTask(saved_dict, preset="math", split="validation")


def test_qa_task_reads_a_saved_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "strategyqa"
    datasets.Dataset.from_dict(YES_NO).save_to_disk(str(folder))
    task = make_task("qa", data=str(folder), preset="strategyqa")
    assert isinstance(task, QATask)
    yes, no = task.problems("test")
    assert (yes.answer, no.answer) == ("yes", "no")
    assert task.score(yes, [r"\boxed{yes}"]).reward == 1.0
    wrong = task.score(no, [r"\boxed{yes}"])
    assert wrong.reward == 0.0 and wrong.info["gold"] == "no"


def test_qa_task_reads_math_rows_from_a_dataset_dict(saved_dict: Path) -> None:
    task = QATask(saved_dict, preset="math_level5", split="train")
    try:
        (problem,) = task.problems("train")  # the preset keeps the 'Level 5' row
        assert problem.answer == r"\frac{1}{2}"
        assert task.score(problem, [r"\boxed{0.5}"]).reward == 1.0
        assert task.score(problem, [r"\boxed{2}"]).reward == 0.0
    finally:
        task.close()


def test_a_missing_field_names_the_field_and_the_dataset(saved_dict: Path) -> None:
    message = (
        f"dataset {str(saved_dict)!r}, split 'train', line 1: missing field 'answer'; the row "
        "has fields ['level', 'problem', 'solution']; choose fields with "
        "question_key=/answer_key= or a preset"
    )
    with pytest.raises(DatasetFieldError, match=f"^{re.escape(message)}$"):
        MathTask(saved_dict)  # no preset: the answer field defaults to 'answer'
    with pytest.raises(DatasetFieldError, match=r"^dataset .* missing field 'question'; "):
        QATask(saved_dict, answer_type="math", split="train")


def test_a_plain_folder_is_still_refused_by_qa(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not one written by save_to_disk"):
        QATask(tmp_path, answer_type="yes_no")


def test_without_datasets_the_error_names_the_extra(
    saved_dict: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    extra = 'pip install "thoughtmdp[datasets]"'
    with pytest.raises(DependencyNotInstalled, match=re.escape(extra)):
        load_hf_dataset(str(saved_dict), "train")
    with pytest.raises(DependencyNotInstalled, match=re.escape(extra)):
        MathTask("AI-MO/NuminaMath-CoT", preset="numinamath")
    with pytest.raises(DependencyNotInstalled, match=re.escape(extra)):
        QATask(saved_dict, preset="strategyqa")
