"""Row layouts of the evaluation benchmarks' public releases, as :class:`QAPreset` objects.

Each preset names the fields a row of that release holds, how its options and gold answer
are stored, which rows belong to the benchmark (filters) and where the data usually comes
from. The layouts are those of the releases as we know them; where a release differs, the
task's error names the missing field and the preset, and ``QATask(question_key=...,
answer_key=..., choices_key=...)`` adapts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from thoughtmdp.errors import UnknownNameError


@dataclass(frozen=True)
class QAPreset:
    r"""How the rows of one benchmark release are laid out.

    Attributes:
        name: The preset name (``QATask(preset=...)``).
        title: The benchmark, for messages.
        answer_type: ``"multiple_choice"``, ``"yes_no"`` or ``"math"``.
        question_key: Field of the question.
        answer_key: Field of the gold answer (a label, a bool, a LaTeX answer, or a worked
            solution whose last ``\boxed{}`` is the answer).
        choices_key: Field of the options (multiple choice only): ``{"label": [...],
            "text": [...]}``, a list of texts (labelled A, B, ...), a list of
            ``{"label", "text"}`` objects or a ``{label: text}`` mapping.
        filters: Dotted field -> accepted values (compared without case): rows that do not
            match belong to other benchmarks of the same release and are left out.
        dataset: The dataset name on the Hugging Face hub, when known.
        split: The split to load from the hub, and the split name of problem ids.
        expects: One line on the rows this preset expects, for error messages.
    """

    name: str
    title: str
    answer_type: str
    question_key: str = "question"
    answer_key: str = "answer"
    choices_key: str | None = None
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dataset: str | None = None
    split: str = "test"
    expects: str = ""


def _sciknoweval(domain: str, *values: str) -> QAPreset:
    return QAPreset(
        name=f"sciknoweval_{domain.lower()}",
        title=f"SciKnowEval {domain}",
        answer_type="multiple_choice",
        answer_key="answerKey",
        choices_key="choices",
        filters={"domain": values},
        dataset="hicai-zju/SciKnowEval",
        expects=(
            "SciKnowEval rows: question, choices {text: [...], label: [...]}, answerKey, "
            f"domain ({' or '.join(values)}), details.level, type; rows without options "
            "(open-ended, generation) are skipped"
        ),
    )


PRESETS: dict[str, QAPreset] = {
    p.name: p
    for p in (
        QAPreset(
            name="numinamath_olympiads",
            title="NuminaMath-Olympiads",
            answer_type="math",
            question_key="problem",
            answer_key="solution",
            filters={"source": ("olympiads",)},
            dataset="AI-MO/NuminaMath-CoT",
            split="train",
            expects=(
                "NuminaMath-CoT rows: problem, solution (its last \\boxed{} is the answer; "
                "proofs without one are skipped), source ('olympiads' rows are kept)"
            ),
        ),
        QAPreset(
            name="hmmt_nov_2025",
            title="HMMT November 2025",
            answer_type="math",
            question_key="problem",
            dataset="MathArena/hmmt_nov_2025",
            split="train",
            expects="HMMT rows: problem, answer (LaTeX); 30 problems",
        ),
        QAPreset(
            name="math_level5",
            title="MATH Level 5",
            answer_type="math",
            question_key="problem",
            answer_key="solution",
            filters={"level": ("Level 5",)},
            dataset="DigitalLearningGmbH/MATH-lighteval",
            expects=(
                "MATH rows: problem, solution (its last \\boxed{} is the answer), level "
                "('Level 5' rows are kept), type"
            ),
        ),
        QAPreset(
            name="strategyqa",
            title="StrategyQA",
            answer_type="yes_no",
            dataset="ChilleD/StrategyQA",
            expects="StrategyQA rows: question, answer (true/false); qid, facts are kept aside",
        ),
        QAPreset(
            name="acereason_math",
            title="AceReason-Math",
            answer_type="math",
            question_key="problem",
            dataset="nvidia/AceReason-Math",
            split="train",
            expects="AceReason-Math rows: problem, answer (LaTeX)",
        ),
        _sciknoweval("Chemistry", "Chemistry"),
        _sciknoweval("Biology", "Biology"),
        _sciknoweval("Materials", "Material", "Materials"),
        _sciknoweval("Physics", "Physics"),
        QAPreset(
            name="commonsenseqa",
            title="CommonsenseQA",
            answer_type="multiple_choice",
            answer_key="answerKey",
            choices_key="choices",
            dataset="tau/commonsense_qa",
            split="validation",
            expects=(
                "CommonsenseQA rows: question, choices {label: [...], text: [...]}, answerKey "
                "(the public test split has no answers; use validation)"
            ),
        ),
    )
}
"""The benchmarks of the paper's evaluation suite, by preset name."""


def get_preset(name: str) -> QAPreset:
    """The preset called ``name``.

    Args:
        name: A key of :data:`PRESETS`.

    Returns:
        The preset.

    Raises:
        UnknownNameError: If there is no such preset (the message lists them).

    >>> get_preset("commonsenseqa").choices_key
    'choices'
    """
    if name not in PRESETS:
        raise UnknownNameError(f"unknown QA preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
