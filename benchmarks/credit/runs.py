"""The runs of the learning benchmark: scenarios, methods, budgets and studies.

A run is one ``thoughtmdp train`` of one method, seed, learning rate and knob value (the
position of HardStepChain's hard step). Its folder is named by those, so the studies share
runs: the main comparison's first seeds are also points of the knob study.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HARD_STEP_RECIPE = {
    "task": "hard_step_chain",
    "num_steps": 8,
    "operand_range": "[1,4]",
    "error_rate": 0.06,
    "hard_error_rate": 0.4,
    "steps": 1000,
}
"""The warm start of the long chains (``warmstart.*``): easy steps err at 6 %, the hard step
at 40 % in the traces, and the hard step sits anywhere, so one model serves every knob value."""

METHODS: dict[str, str] = {
    "grpo": "[grpo]",
    "rrpo": "[1x4,rrpo]",
    "srpo": "[1x4,srpo]",
    "oracle": "[1x4,oracle]",
    "srpo_2x4": "[2x4,srpo]",
    "srpo_1x8": "[1x8,srpo]",
    "least_confident": "[1x4,least_confident]",
}
"""Each method's ``actor.episode.presets``: 8 rollouts a prompt in every one."""
ASKS_THE_POLICY = ("srpo", "srpo_2x4", "srpo_1x8")
"""Methods whose reset policy is the self-localiser."""
FIRST_CONDITIONS = ("actor.pin_version=false",)
"""How the study's first runs sampled, before it was a setting (episodes could switch to a
newer adapter midway; the library's default now pins them): kept so that every seed of the
study runs alike. Runs recorded without these settings ran under them."""
FIRST_LOCALIZER = ("actor.episode.reset_policy_options.check_answer_echo=false",)
"""The same for the self-localiser: a boxed step number equal to the answer counted as a step."""

MAIN_KNOB = 8
"""The hard step of the main comparison: the last, so fewest chains reach it cleanly."""
KNOBS = (2, 5, 8)
"""Hard-step positions of the knob study (``p`` falls as the step moves later)."""
LEARNING_RATES = (1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3)
DEFAULT_LR = 2e-4


@dataclass(frozen=True)
class Budget:
    """How long each run trains and how it is evaluated.

    Attributes:
        seeds: Seeds of the main comparison (other studies use fewer, see :func:`study`).
        steps: Learner steps per run.
        prompts: Prompts per learner step (8 rollouts each).
        problems: Held-out problems evaluated.
        samples: Sampled rollouts per held-out problem (sampled pass@1), beside greedy.
        versions: Adapter versions evaluated between the first and the last.
    """

    seeds: int
    steps: int
    prompts: int
    problems: int
    samples: int
    versions: int


FULL = Budget(seeds=5, steps=40, prompts=8, problems=1000, samples=4, versions=1)
QUICK = Budget(seeds=1, steps=2, prompts=2, problems=16, samples=2, versions=0)


@dataclass(frozen=True)
class Run:
    """One training run of the benchmark."""

    method: str
    seed: int
    hard_step: int
    lr: float = DEFAULT_LR

    @property
    def key(self) -> str:
        """The run's folder below the runs root, e.g. ``h7/srpo-lr0.0002-seed0``."""
        return f"h{self.hard_step}/{self.method}-lr{self.lr:g}-seed{self.seed}"

    def folder(self, root: Path) -> Path:
        """The run folder."""
        return root / self.key

    def settings(self, budget: Budget) -> list[str]:
        """The ``thoughtmdp train`` settings of this run."""
        recipe = [f"warmstart.{k}={v}" for k, v in HARD_STEP_RECIPE.items()]
        return [
            *recipe,
            "actor.task=hard_step_chain",
            f"actor.task_options.hard_step={self.hard_step}",
            "actor.max_thoughts=12",
            "actor.sampling.temperature=1.0",
            f"actor.in_flight={budget.prompts}",
            f"actor.episode.presets={METHODS[self.method]}",
            f"actor.seed={1000 * self.seed}",
            f"learner.seed={self.seed}",
            f"learner.optim.lr={self.lr:g}",
            f"learner.max_steps={budget.steps}",
            f"learner.prompts_per_step={budget.prompts}",
            f"learner.prompts_per_minibatch={budget.prompts}",
            "learner.checkpoint_every=1000",
            "max_minutes=null",
            f"heldout.problems={budget.problems}",
            f"heldout.samples={budget.samples}",
            f"heldout.versions={budget.versions}",
            "heldout.concurrency=256",
            "plots=false",
            *self.first_conditions(),
        ]

    def first_conditions(self) -> tuple[str, ...]:
        """Settings that restate how the study's first runs ran (see ``FIRST_CONDITIONS``)."""
        asks = self.method in ASKS_THE_POLICY
        return FIRST_CONDITIONS + (FIRST_LOCALIZER if asks else ())


STUDIES = ("main", "lr", "knob", "shapes")
"""In the order the compute goes to them."""


def study(name: str, budget: Budget, lrs: dict[str, float]) -> list[Run]:
    """The runs of one study.

    Args:
        name: ``main`` (GRPO, RRPO, SRPO, oracle; ``budget.seeds`` seeds), ``lr`` (GRPO and
            SRPO at five rates, 2 seeds), ``knob`` (GRPO, oracle, SRPO at every knob value,
            3 seeds) or ``shapes`` (SRPO 2x4 and 1x8, least-confident resets; 3 seeds).
        budget: The budget (its seeds cap every study's).
        lrs: The learning rate of each method (the best of the ``lr`` study, once it ran).
    """
    few = min(3, budget.seeds)

    def runs(methods: tuple[str, ...], seeds: int, knobs: tuple[int, ...]) -> list[Run]:
        # seed by seed, so that an interrupted study has every method on its first seeds
        return [
            Run(m, s, h, lrs.get(m, DEFAULT_LR))
            for s in range(seeds)
            for h in knobs
            for m in methods
        ]

    if name == "main":
        return runs(("grpo", "oracle", "srpo", "rrpo"), budget.seeds, (MAIN_KNOB,))
    if name == "lr":
        return [
            Run(m, s, MAIN_KNOB, lr)
            for s in range(min(2, budget.seeds))
            for m in ("grpo", "srpo")
            for lr in LEARNING_RATES
        ]
    if name == "knob":
        return runs(("grpo", "oracle", "srpo"), few, KNOBS)
    if name == "shapes":
        return runs(("srpo_2x4", "srpo_1x8", "least_confident"), few, (MAIN_KNOB,))
    raise ValueError(f"unknown study {name!r}; known: {STUDIES}")
