"""Chat templates: a prompt sent as the user turn of a chat model, or as raw text.

Instruct models expect their chat format. With a template the rollout prompt (and the
localiser's question) becomes one user message followed by the generation prompt (the
assistant header), so the thoughts the model samples continue inside the assistant turn.

The ``chat_template`` setting of the actor and of evaluations picks the format:

- ``auto`` (the default): the tokenizer's own template when it has one, else raw text;
- ``none``: raw text;
- any other value: the path of a Jinja template file, used instead of the tokenizer's
  (the tokenizer itself is left as it is).

Rendering gives text, and the ids are that text encoded without special tokens, which is
exactly what ``apply_chat_template(..., tokenize=True)`` does. So a backend that encodes the
rendered text the same way (``complete``) sees the same ids as the env.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from thoughtmdp.errors import ConfigError
from thoughtmdp.types import TokenIds

AUTO, NONE = "auto", "none"


@dataclass(frozen=True)
class ChatFormat:
    """How a prompt text becomes the model's input: the user turn of a template, or raw text.

    Build one with :meth:`resolve`; ``template`` is ``None`` for raw text.

    Attributes:
        tokenizer: Renders the template and encodes text (``None``: text only, no ids).
        template: The Jinja template's source (``None``: raw text).

    >>> fmt = ChatFormat.resolve(None, "none")
    >>> fmt.render("Q: 1+2?"), fmt.is_chat
    ('Q: 1+2?', False)
    """

    tokenizer: Any = field(default=None, repr=False)
    template: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, tokenizer: Any, setting: str = AUTO) -> ChatFormat:
        """The format ``setting`` (``auto``, ``none`` or a template file) stands for.

        Args:
            tokenizer: The model's tokenizer (``None``: raw text; a file is still checked).
            setting: The ``chat_template`` setting.

        Returns:
            The format.

        Raises:
            ConfigError: If ``setting`` names a file that cannot be read, or a template
                file is given with a tokenizer that cannot apply one.
        """
        if setting == NONE:
            return cls(tokenizer)
        if setting == AUTO:
            return cls(tokenizer, _own_template(tokenizer))
        template = read_template(setting)
        if tokenizer is not None and not hasattr(tokenizer, "apply_chat_template"):
            raise ConfigError(
                f"chat_template: {setting!r} needs a tokenizer with apply_chat_template, "
                f"got {type(tokenizer).__name__}; set chat_template=none for raw prompts"
            )
        return cls(tokenizer, template)

    @property
    def is_chat(self) -> bool:
        """Whether prompts go through a chat template."""
        return self.template is not None and self.tokenizer is not None

    def render(self, text: str) -> str:
        """``text`` as the model reads it: a user turn plus the assistant header, or as is."""
        if not self.is_chat:
            return text
        rendered = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}],
            chat_template=self.template,
            add_generation_prompt=True,
            tokenize=False,
        )
        return str(rendered)

    def encode(self, text: str) -> TokenIds:
        """The token ids of :meth:`render` (special tokens of the template kept, none added).

        Raises:
            ValueError: Without a tokenizer.
        """
        if self.tokenizer is None:
            raise ValueError("encoding a prompt needs a tokenizer")
        return tuple(self.tokenizer.encode(self.render(text), add_special_tokens=False))


def _own_template(tokenizer: Any) -> str | None:
    """The tokenizer's template; of several named ones, the one called ``default``."""
    own = getattr(tokenizer, "chat_template", None)
    if not own or isinstance(own, str):
        return own or None
    if "default" not in own:
        raise ConfigError(
            f"chat_template: the tokenizer has several templates ({', '.join(sorted(own))}) "
            "and none is called 'default'; set chat_template to a template file, or none"
        )
    return str(own["default"])


def read_template(path: str | Path) -> str:
    """The Jinja source in the file ``path`` (read once per path and process).

    Raises:
        ConfigError: If the file cannot be read or is empty, naming the setting and the path.
    """
    return _read_template(str(path))


@lru_cache(maxsize=16)
def _read_template(path: str) -> str:
    hint = "expected auto, none or the path of a Jinja chat template file"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"chat_template: cannot read {path!r} ({reason}); {hint}") from None
    if not text.strip():
        raise ConfigError(f"chat_template: {path!r} is empty; {hint}")
    return text
