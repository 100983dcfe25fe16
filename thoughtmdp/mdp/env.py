"""The Thought MDP as a Gymnasium environment that can be reset to any earlier prefix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium
from gymnasium import spaces

from thoughtmdp.errors import EpisodeFinishedError, InvalidPrefixError, VerifierUnavailable
from thoughtmdp.mdp.chat import AUTO, ChatFormat
from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER
from thoughtmdp.mdp.spaces import UnicodeText
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.types import PrefixState, Problem, Thought, TokenIds

MAX_TEXT_LENGTH = 1_000_000
RESET_OPTIONS = frozenset({"problem", "prefix"})

Observation = dict[str, Any]
Action = str | Thought


class Tokenizer(Protocol):
    """What the env needs of a tokenizer; Hugging Face tokenizers qualify."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]:
        """Token ids of ``text``."""
        ...


class ThoughtMDPEnv(gymnasium.Env[Observation, Action]):
    r"""A verifiable task as a Thought MDP: state = prompt + thoughts, action = one thought.

    ``reset(options={"problem": i_or_id, "prefix": p})`` starts from problem ``i`` (index in
    the split) or id, optionally at a prefix ``p`` (a :class:`PrefixState` or a list of
    thoughts). ``step(thought)`` appends a thought; the episode terminates when the task sees
    a final answer (reward = the task's score in [0, 1]) and truncates at ``max_thoughts``
    thoughts or ``max_total_tokens`` thought tokens (reward 0).

    Observations hold the prompt text and the thought texts; with a tokenizer (or a prefix
    carrying token ids) ``info`` also holds ``prompt_token_ids`` and ``prefix_token_ids``
    (prompt followed by every thought's ids, exactly as sampled).

    With a tokenizer that has a chat template (``chat_template="auto"``) or a template file,
    the task's prompt is the user turn of a chat and the assistant header follows it, so
    thoughts continue inside the assistant turn; the observed prompt is that rendered text
    and ``prompt_token_ids`` are its ids (:mod:`thoughtmdp.mdp.chat`).

    Args:
        task: A task object, or a registered task name.
        split: Which split to draw problems from (default: the task's first split).
        tokenizer: Encodes the prompt and thoughts given as text.
        chat_template: ``auto`` (the tokenizer's chat template if it has one, else raw
            text), ``none`` (raw text) or the path of a Jinja template file.
        max_thoughts: Chain cap; reaching it without an answer truncates.
        max_total_tokens: Budget of thought tokens (counted only when token ids are known).
        render_mode: ``None`` or ``"ansi"``.
        **task_kwargs: Passed to :func:`thoughtmdp.make_task` when ``task`` is a name.

    >>> env = ThoughtMDPEnv("arith_chain", num_steps=2, seed=0)
    >>> obs, info = env.reset(options={"problem": 0})
    >>> obs["thoughts"], info["problem_id"], info["h"]
    ((), 'train/0', 0)
    >>> obs, reward, terminated, truncated, info = env.step("6+4=10</thought>")
    >>> obs["thoughts"]
    ('6+4=10',)
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 1}  # noqa: RUF012

    def __init__(
        self,
        task: VerifiableTask | str,
        *,
        split: str | None = None,
        tokenizer: Tokenizer | None = None,
        chat_template: str = AUTO,
        max_thoughts: int = 20,
        max_total_tokens: int | None = 4096,
        render_mode: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        if isinstance(task, str):
            from thoughtmdp.mdp.task import make_task

            task = make_task(task, **task_kwargs)
        elif task_kwargs:
            raise TypeError(f"task options {sorted(task_kwargs)} need a task name, not an object")
        if max_thoughts < 1:
            raise ValueError(f"max_thoughts must be at least 1, got {max_thoughts}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.task = task
        self.split = split if split is not None else task.splits[0]
        if self.split not in task.splits:
            raise ValueError(f"task {task.name!r} has splits {task.splits}, not {self.split!r}")
        self.problems: Sequence[Problem] = task.problems(self.split)
        self.tokenizer = tokenizer
        self.chat = ChatFormat.resolve(tokenizer, chat_template)
        self.max_thoughts = max_thoughts
        self.max_total_tokens = max_total_tokens
        self.render_mode = render_mode
        text = UnicodeText(MAX_TEXT_LENGTH)
        self.action_space = UnicodeText(MAX_TEXT_LENGTH)
        self.observation_space = spaces.Dict(
            {"prompt": text, "thoughts": spaces.Sequence(text, stack=False)}
        )
        self._problem: Problem | None = None
        self._prompt = ""
        self._state = PrefixState("")
        self._done = False

    # -- Gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start an episode; see the class docstring for ``options``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - RESET_OPTIONS
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; known: {sorted(RESET_OPTIONS)}"
            )
        prefix = options.get("prefix")
        problem = self._select_problem(options.get("problem"), prefix)
        state = self._start_state(problem, prefix)
        self._enter(problem, state)
        if self._done:
            raise InvalidPrefixError(
                f"prefix of {state.h} thoughts is already finished "
                f"(final answer or cap of {self.max_thoughts} thoughts); reset to a shorter one"
            )
        return self._observation(), self._info()

    def step(self, action: Action) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Append one thought; returns ``(obs, reward, terminated, truncated, info)``.

        A verifier that fails on the answer gives a zero reward with ``info["verifier"]
        ["error"]``.

        Raises:
            VerifierUnavailable: If the task's verifier cannot run at all (its worker
                process cannot start or keeps crashing): a setup problem, never a reward.
        """
        if self._problem is None:
            raise EpisodeFinishedError("call reset() before step()")
        if self._done:
            raise EpisodeFinishedError("the episode has ended; call reset() before step()")
        thought = self._to_thought(action)
        self._state = PrefixState(
            self._state.problem_id, self._state.prompt_token_ids, (*self._state.thoughts, thought)
        )
        terminated, truncated = self._end_flags()
        self._done = terminated or truncated
        info = self._info()
        reward = 0.0
        if terminated:
            reward, info["verifier"] = self._score()
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> str | None:
        """The prompt and the thoughts so far as text (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        steps = "".join(f"[{i}] {t.text}\n" for i, t in enumerate(self._state.thoughts, 1))
        return self._prompt + steps

    def close(self) -> None:
        """Release the task's resources (verifier workers)."""
        self.task.close()

    # -- state access --------------------------------------------------------------------

    def tokens_left(self) -> int | None:
        """Thought tokens the episode may still sample; ``None`` without a token budget.

        A sampler that caps each thought at this many tokens keeps the response within
        ``max_total_tokens`` exactly; the env itself only truncates once the budget is reached.
        """
        if self.max_total_tokens is None:
            return None
        return max(self.max_total_tokens - _thought_tokens(self._state.thoughts), 0)

    def get_state(self) -> PrefixState:
        """The current state: problem id, prompt token ids and thoughts (immutable, cheap)."""
        return self._state

    def set_state(self, state: PrefixState) -> None:
        """Jump to ``state`` (any state, finished ones included) without a reset."""
        if not isinstance(state, PrefixState):
            raise TypeError(f"set_state expects a PrefixState, got {type(state).__name__}")
        problem = self.task.get_problem(state.problem_id)
        self._enter(problem, self._start_state(problem, state))

    @property
    def problem(self) -> Problem:
        """The problem of the current episode."""
        if self._problem is None:
            raise EpisodeFinishedError("no episode yet; call reset()")
        return self._problem

    # -- helpers -------------------------------------------------------------------------

    def _select_problem(self, choice: Any, prefix: Any) -> Problem:
        if choice is None and isinstance(prefix, PrefixState):
            choice = prefix.problem_id
        if choice is None:
            return self.problems[int(self.np_random.integers(len(self.problems)))]
        if isinstance(choice, str):
            return self.task.get_problem(choice)
        if isinstance(choice, int) and not isinstance(choice, bool):
            if not 0 <= choice < len(self.problems):
                raise ValueError(
                    f"reset option 'problem' = {choice} is out of range for split "
                    f"{self.split!r} of {len(self.problems)} problems"
                )
            return self.problems[choice]
        raise TypeError(f"reset option 'problem' must be an int index or a str id, got {choice!r}")

    def _start_state(self, problem: Problem, prefix: Any) -> PrefixState:
        if isinstance(prefix, PrefixState):
            if prefix.problem_id != problem.id:
                raise InvalidPrefixError(
                    f"prefix belongs to problem {prefix.problem_id!r}, not {problem.id!r}"
                )
            prompt_ids = prefix.prompt_token_ids or self.encode_prompt(problem)
            thoughts = tuple(self._to_thought(t, field="prefix") for t in prefix.thoughts)
        elif prefix is None or (isinstance(prefix, Sequence) and not isinstance(prefix, str)):
            prompt_ids = self.encode_prompt(problem)
            thoughts = tuple(self._to_thought(t, field="prefix") for t in prefix or ())
        else:
            raise TypeError(
                f"reset option 'prefix' must be a PrefixState or a list of thoughts, "
                f"got {type(prefix).__name__}"
            )
        return PrefixState(problem.id, prompt_ids, thoughts)

    def _enter(self, problem: Problem, state: PrefixState) -> None:
        self._problem = problem
        self._prompt = self.chat.render(self.task.render_prompt(problem))
        self._state = state
        terminated, truncated = self._end_flags()
        self._done = terminated or truncated

    def encode_prompt(self, problem: Problem) -> TokenIds | None:
        """The token ids a chain on ``problem`` starts from (``None`` without a tokenizer).

        They are the task's prompt in the chat format (:attr:`chat`), encoded without adding
        special tokens.
        """
        if self.tokenizer is None:
            return None
        return self.chat.encode(self.task.render_prompt(problem))

    def _to_thought(self, action: Any, field: str = "action") -> Thought:
        if isinstance(action, Thought):
            if action.token_ids is not None or self.tokenizer is None:
                return action
            return Thought(
                action.text, self._encode_thought(action.text), None, action.policy_version
            )
        if isinstance(action, str):
            text = action.removesuffix(THOUGHT_DELIMITER)
            ids = None if self.tokenizer is None else self._encode_thought(text)
            return Thought(text, ids)
        raise TypeError(
            f"{field} must be a str or a thoughtmdp.Thought, got {type(action).__name__}"
        )

    def _encode_thought(self, text: str) -> TokenIds:
        assert self.tokenizer is not None
        return tuple(self.tokenizer.encode(text + THOUGHT_DELIMITER, add_special_tokens=False))

    def _end_flags(self) -> tuple[bool, bool]:
        thoughts = self._state.thoughts
        terminated = bool(thoughts) and self.task.is_final(thoughts[-1].text)
        over_budget = (
            self.max_total_tokens is not None and _thought_tokens(thoughts) >= self.max_total_tokens
        )
        truncated = not terminated and (len(thoughts) >= self.max_thoughts or over_budget)
        return terminated, truncated

    def _score(self) -> tuple[float, dict[str, Any]]:
        texts = [t.text for t in self._state.thoughts]
        try:
            score = self.task.score(self.problem, texts)
        except VerifierUnavailable:  # a broken setup must not pass for wrong answers
            raise
        except Exception as exc:  # a verifier crash is a zero reward, never a dead episode
            return 0.0, {"error": f"{type(exc).__name__}: {exc}"}
        reward = float(score.reward)
        if not 0.0 <= reward <= 1.0:
            return 0.0, {**score.info, "error": f"verifier returned reward {reward} outside [0, 1]"}
        return reward, dict(score.info)

    def _observation(self) -> Observation:
        return {"prompt": self._prompt, "thoughts": tuple(t.text for t in self._state.thoughts)}

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"problem_id": self._state.problem_id, "h": self._state.h}
        prompt_ids = self._state.prompt_token_ids
        thoughts = self._state.thoughts
        if prompt_ids is not None and all(t.token_ids is not None for t in thoughts):
            info["prompt_token_ids"] = prompt_ids
            info["prefix_token_ids"] = prompt_ids + tuple(
                i for t in thoughts for i in t.token_ids or ()
            )
        return info


def _thought_tokens(thoughts: Sequence[Thought]) -> int:
    """Thought tokens so far; 0 when any thought lacks token ids (the budget is then off)."""
    if any(t.token_ids is None for t in thoughts):
        return 0
    return sum(len(t.token_ids or ()) for t in thoughts)


def make_task_env(task: str, **kwargs: Any) -> ThoughtMDPEnv:
    """Gymnasium entry point: a :class:`ThoughtMDPEnv` on the registered task ``task``."""
    return ThoughtMDPEnv(task, **kwargs)
