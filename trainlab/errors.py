"""User-facing errors.

A :class:`TrainlabError` is a mistake in what the user gave (a config key, a value,
a file). The CLI prints its message as one line and exits with status 2; the API
raises it as a ``ValueError`` so Python users can catch it the usual way.
"""

from __future__ import annotations

__all__ = ["TrainlabError", "ConfigError", "DataError", "CheckpointError"]


class TrainlabError(ValueError):
    """A problem with the user's input: the message names the thing and what is allowed."""


class ConfigError(TrainlabError):
    """A bad configuration key or value."""


class DataError(TrainlabError):
    """A missing, corrupt or inconsistent data file, or an impossible split."""


class CheckpointError(TrainlabError):
    """A missing, corrupt or mismatched checkpoint / saved model."""
