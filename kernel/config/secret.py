"""``Secret``: a credential read from an environment variable, never shown."""

from __future__ import annotations

import os
from collections.abc import Mapping

from kernel.config.errors import ConfigError


class Secret:
    """A credential read from an environment variable. Its repr and str show the variable's name
    and whether it is set, never the value: ``Secret(env='TK_KEY', set)``."""

    __slots__ = ("_env", "_value")

    def __init__(self, env: str = "", value: str | None = None) -> None:
        self._env = env
        self._value = value or None

    @classmethod
    def from_env(cls, env: str, environ: Mapping[str, str] | None = None) -> Secret:
        """The secret held by the variable ``env`` (``os.environ`` unless ``environ`` is given)."""
        source = os.environ if environ is None else environ
        return cls(env, source.get(env) if env else None)

    @property
    def env(self) -> str:
        """The environment variable's name ("" when none is configured)."""
        return self._env

    @property
    def is_set(self) -> bool:
        """True when the variable is set and not empty."""
        return self._value is not None

    def reveal(self) -> str:
        """The value. Raises ``ConfigError`` when no variable is configured or it is unset or empty."""
        if self._value is None:
            if not self._env:
                raise ConfigError("no environment variable is configured for this secret")
            raise ConfigError(f"environment variable {self._env} is not set (or empty)")
        return self._value

    def __repr__(self) -> str:
        return f"Secret(env={self._env!r}, {'set' if self.is_set else 'not set'})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._env, self._value) == (other._env, other._value)

    def __hash__(self) -> int:
        return hash((Secret, self._env, self._value))
