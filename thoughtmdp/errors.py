"""Exceptions raised by thoughtmdp, all under :class:`ThoughtMDPError`."""

from __future__ import annotations


class ThoughtMDPError(Exception):
    """Base class of every error this library raises on purpose."""


class UnknownNameError(ThoughtMDPError, KeyError):
    """A task, reset policy or other registered name does not exist."""

    def __str__(self) -> str:
        # KeyError would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class DependencyNotInstalled(ThoughtMDPError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class DatasetFieldError(ThoughtMDPError, ValueError):
    """A data row is malformed; the message names the file, the line and the field."""


class EpisodeFinishedError(ThoughtMDPError, RuntimeError):
    """``step`` was called on an episode that already terminated or truncated."""


class InvalidPrefixError(ThoughtMDPError, ValueError):
    """A reset prefix does not fit the environment (wrong problem, too long, bad thoughts)."""


class StepOracleUnavailable(ThoughtMDPError, NotImplementedError):
    """The task cannot tell which step of a chain is the first wrong one."""


class VerifierTimeout(ThoughtMDPError, TimeoutError):
    """A verifier ran past its time limit."""


class VerifierUnavailable(ThoughtMDPError, RuntimeError):
    """A verifier cannot run at all: its worker process fails to start or keeps crashing.

    This is a setup problem, never a verdict on an answer, so it is raised rather than
    scored as a zero reward; the message names the verifier and what failed.
    """


def require(module: str, extra: str) -> None:
    """Raise :class:`DependencyNotInstalled` unless ``module`` can be imported.

    Args:
        module: The import name to look for.
        extra: The ``thoughtmdp`` extra that provides it.

    Raises:
        DependencyNotInstalled: When the module cannot be found.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DependencyNotInstalled(
            f'{module!r} is not installed; install it with: pip install "thoughtmdp[{extra}]"'
        )


class ConfigError(ThoughtMDPError, ValueError):
    """A configuration key is unknown or its value has the wrong type."""
