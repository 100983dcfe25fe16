"""Any reasoning-gym generator as a verifiable task."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from thoughtmdp.errors import UnknownNameError, require
from thoughtmdp.mdp.boxed import last_boxed
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.types import Problem, Score

TEST_SEED_OFFSET = 1_000_003  # test problems come from a generator seeded apart from train


class ReasoningGymTask(VerifiableTask):
    r"""Problems from a ``reasoning-gym`` generator, scored by its own ``score_answer``.

    The answer is the last ``\boxed{}`` of the final thought. The reward is 1.0 exactly when
    the generator scores that answer 1.0; partial credit counts as wrong, and a scorer
    exception is a zero reward with the exception in ``info["error"]``.

    The test split comes from the same generator with a different seed; for generators with
    few distinct problems it can repeat train problems.

    Args:
        dataset: A reasoning-gym generator name (``thoughtmdp tasks`` does not list them;
            see ``reasoning_gym.factory.DATASETS``).
        size: Number of train problems.
        test_size: Number of test problems.
        seed: Seed of the train generator.
        prompt_template: Rollout template with a ``{question}`` field.
        **config: The generator's own configuration fields.

    Raises:
        DependencyNotInstalled: Without the ``reasoning-gym`` extra.
        UnknownNameError: For an unknown generator name.
    """

    name = "reasoning_gym"

    def __init__(
        self,
        dataset: str = "basic_arithmetic",
        size: int = 1_000,
        test_size: int = 200,
        seed: int = 0,
        prompt_template: str = ROLLOUT_TEMPLATE,
        **config: Any,
    ) -> None:
        super().__init__(prompt_template)
        require("reasoning_gym", "reasoning-gym")
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS:
            close = difflib.get_close_matches(dataset, list(DATASETS), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(f"unknown reasoning-gym dataset {dataset!r}.{hint}")
        self.dataset = dataset
        self.config = config
        self._generators = {
            "train": self._create(size, seed),
            "test": self._create(test_size, seed + TEST_SEED_OFFSET),
        }
        self._cache: dict[str, list[Problem]] = {}

    def _create(self, size: int, seed: int) -> Any:
        import reasoning_gym

        return reasoning_gym.create_dataset(self.dataset, size=size, seed=seed, **self.config)

    def problems(self, split: str) -> Sequence[Problem]:
        """All problems of ``split``, generated on first use."""
        if split not in self._generators:
            raise ValueError(f"ReasoningGym splits are {self.splits}, not {split!r}")
        if split not in self._cache:
            generator = self._generators[split]
            self._cache[split] = [
                Problem(
                    id=f"{split}/{i}",
                    question=entry["question"],
                    answer=str(entry["answer"]),
                    split=split,
                    payload={"entry": entry},
                )
                for i, entry in enumerate(generator)
            ]
        return self._cache[split]

    def score(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        """1.0 when the generator fully credits the boxed answer of the final thought."""
        answer = last_boxed(thoughts[-1]) if thoughts else None
        info: dict[str, Any] = {"answer": answer, "gold": problem.answer}
        if answer is None:
            return Score(0.0, {**info, "error": "no boxed answer"})
        generator = self._generators[problem.split]
        try:
            credit = float(generator.score_answer(answer=answer, entry=problem.payload["entry"]))
        except Exception as exc:  # the scorer is third-party code: its failure is a wrong answer
            return Score(0.0, {**info, "error": f"{type(exc).__name__}: {exc}"})
        info["credit"] = credit
        return Score(1.0 if credit == 1.0 else 0.0, info)
