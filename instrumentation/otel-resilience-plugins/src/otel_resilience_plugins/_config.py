"""Configuration: the per-plugin policy, ``[[wrap]]`` targets, and the TOML file.

The file named by ``OTEL_RESILIENCE_CONFIG`` (or passed as ``config_path``) looks like::

    [plugins]
    groups = ["myapp.plugins"]
    methods = ["run"]
    max_attempts = 3
    timeout = 5.0

    [[wrap]]
    target = "myapp.billing:charge"
    name = "billing.charge"
    max_attempts = 3
    timeout = 2.0
    failure_threshold = 5

Every error names the file, the table (``plugins`` or ``wrap[i]``, counted from 0) and the
key, for example ``app.toml: wrap[1].max_attempts must be >= 1, got 0``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_resilience._validation import check_int, check_number, check_optional_number

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_BREAKER_TIMEOUT",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_MAX_ATTEMPTS",
    "GROUPS_ENV",
    "METHODS_ENV",
    "PluginPolicy",
    "ResilienceFileConfig",
    "WrapTarget",
    "load_config",
]

CONFIG_ENV = "OTEL_RESILIENCE_CONFIG"
"""Environment variable naming the TOML configuration file."""
GROUPS_ENV = "OTEL_RESILIENCE_PLUGIN_GROUPS"
"""Environment variable: comma-separated entry-point groups whose plugins are protected."""
METHODS_ENV = "OTEL_RESILIENCE_PLUGIN_METHODS"
"""Environment variable: comma-separated method names protected on plugin class instances."""

DEFAULT_MAX_ATTEMPTS = 3
"""Attempts per call, the first included."""
DEFAULT_FAILURE_THRESHOLD = 5
"""Consecutive failures that open a plugin's (or target's) breaker."""
DEFAULT_BREAKER_TIMEOUT = 60.0
"""Seconds a breaker stays open before it lets trial calls through."""

_POLICY_KEYS = (
    "max_attempts",
    "timeout",
    "attempt_timeout",
    "failure_threshold",
    "breaker_timeout",
)
_PLUGINS_KEYS = ("groups", "methods", *_POLICY_KEYS)
_WRAP_KEYS = ("target", "name", *_POLICY_KEYS)


def _check_policy(owner: str, values: Mapping[str, object]) -> dict[str, Any]:
    """Validate the policy keys present in ``values``; messages read ``owner.key ...``."""
    checked: dict[str, Any] = {}
    if "max_attempts" in values:
        checked["max_attempts"] = check_int(owner, "max_attempts", values["max_attempts"])
    if "failure_threshold" in values:
        checked["failure_threshold"] = check_int(
            owner, "failure_threshold", values["failure_threshold"]
        )
    if "breaker_timeout" in values:
        checked["breaker_timeout"] = check_number(
            owner, "breaker_timeout", values["breaker_timeout"]
        )
    for key in ("timeout", "attempt_timeout"):
        if key in values:
            checked[key] = check_optional_number(owner, key, values[key])
    total, per_attempt = checked.get("timeout"), checked.get("attempt_timeout")
    if total is not None and per_attempt is not None and per_attempt > total:
        # The total timeout would always cut the attempt short: the setting means nothing.
        raise ValueError(
            f"{owner}.attempt_timeout must be <= timeout ({total:g}), got {per_attempt:g}"
        )
    return checked


def _check_target(owner: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"{owner}.target must be a 'package.module:qualified.name' str, "
            f"got {type(value).__name__} {value!r}"
        )
    module, sep, qualname = value.partition(":")
    if not sep or not module.strip() or not qualname.strip() or value != value.strip():
        raise ValueError(
            f"{owner}.target must look like 'package.module:qualified.name', got {value!r}"
        )
    return value


def _check_name(owner: str, field_name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{field_name} must be a str, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValueError(f"{owner}.{field_name} must not be empty")
    return value


def _check_names(owner: str, field_name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(
            f"{owner}.{field_name} must be a list of str, got {type(value).__name__} {value!r}"
        )
    names = tuple(_check_name(owner, field_name, item).strip() for item in value)
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}.{field_name} must not repeat a name, got {list(names)!r}")
    return names


def _check_methods(owner: str, value: object) -> tuple[str, ...]:
    methods = _check_names(owner, "methods", value)
    for method in methods:
        if not method.isidentifier() or method.startswith("_"):
            raise ValueError(
                f"{owner}.methods must name public methods (identifiers not starting "
                f"with '_'), got {method!r}"
            )
    return methods


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginPolicy:
    """How calls to one plugin (or one ``[[wrap]]`` target) are protected.

    The default pipeline built from it is: an optional total ``timeout``, a retry of
    ``max_attempts`` attempts (full-jitter backoff), a circuit breaker of its own that opens
    after ``failure_threshold`` consecutive failures and stays open ``breaker_timeout``
    seconds, and an optional ``attempt_timeout``.

    Attributes:
        max_attempts: attempts per call, the first included (1 means no retry).
        timeout: optional total timeout of a call in seconds, retries included.
        attempt_timeout: optional timeout of each attempt in seconds (``<= timeout``).
        failure_threshold: consecutive failures that open the breaker.
        breaker_timeout: seconds the breaker stays open before trial calls.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float | None = None
    attempt_timeout: float | None = None
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    breaker_timeout: float = DEFAULT_BREAKER_TIMEOUT

    def __post_init__(self) -> None:
        checked = _check_policy("PluginPolicy", {key: getattr(self, key) for key in _POLICY_KEYS})
        for key, value in checked.items():
            object.__setattr__(self, key, value)  # frozen: store the normalised float


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapTarget:
    """A function or method patched in place by ``"module:qualname"``.

    Attributes:
        target: ``"package.module:Qualified.name"``, as for :func:`otel_resilience.wrap`.
        name: the pipeline, breaker and component name; default ``target``.
        policy: how its calls are protected.
    """

    target: str
    name: str | None = None
    policy: PluginPolicy = field(default_factory=PluginPolicy)

    def __post_init__(self) -> None:
        _check_target("WrapTarget", self.target)
        if self.name is not None:
            _check_name("WrapTarget", "name", self.name)
        if not isinstance(self.policy, PluginPolicy):
            raise TypeError(
                f"WrapTarget.policy must be a PluginPolicy, got {type(self.policy).__name__}"
            )

    @property
    def component(self) -> str:
        """The name used for the pipeline, the breaker and the component."""
        return self.target if self.name is None else self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class ResilienceFileConfig:
    """The content of a configuration file.

    Attributes:
        groups: entry-point groups from ``[plugins] groups``; ``None`` when the file does not
            say (an empty list means "none").
        methods: method names from ``[plugins] methods``; ``None`` when not given.
        policy: the plugin policy from the other ``[plugins]`` keys.
        wraps: the ``[[wrap]]`` tables, in file order.
    """

    groups: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    policy: PluginPolicy = field(default_factory=PluginPolicy)
    wraps: tuple[WrapTarget, ...] = ()


def _table(owner: str, value: object, known: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"{owner} must be a table, got {type(value).__name__} {value!r}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"{owner} has unknown key {unknown[0]!r} (known: {', '.join(known)})")
    return value


def load_config(path: str | os.PathLike[str]) -> ResilienceFileConfig:
    r"""Read and validate a TOML configuration file.

    Raises:
        OSError: the file cannot be read.
        ValueError: invalid TOML, an unknown key or table, or a value out of range; the
            message names the file, the table and the key.
        TypeError: a value of the wrong type, named likewise.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder, "resilience.toml")
        ...     _ = path.write_text('[[wrap]]\ntarget = "json:dumps"\nmax_attempts = 2\n')
        ...     config = load_config(path)
        >>> config.wraps[0].target, config.wraps[0].policy.max_attempts
        ('json:dumps', 2)
    """
    where = os.fspath(path)
    try:
        document = tomllib.loads(Path(where).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text: {exc.reason}") from None
    unknown = sorted(set(document) - {"plugins", "wrap"})
    if unknown:
        raise ValueError(f"{where}: unknown table or key {unknown[0]!r} (known: plugins, wrap)")

    groups: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    policy = PluginPolicy()
    if "plugins" in document:
        owner = f"{where}: plugins"
        plugins = _table(owner, document["plugins"], _PLUGINS_KEYS)
        if "groups" in plugins:
            groups = _check_names(owner, "groups", plugins["groups"])
        if "methods" in plugins:
            methods = _check_methods(owner, plugins["methods"])
        policy = PluginPolicy(**_check_policy(owner, plugins))

    wraps: list[WrapTarget] = []
    raw_wraps = document.get("wrap", [])
    if not isinstance(raw_wraps, list):
        raise TypeError(f"{where}: wrap must be an array of tables ([[wrap]])")
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_wraps):
        owner = f"{where}: wrap[{index}]"
        table = _table(owner, raw, _WRAP_KEYS)
        if "target" not in table:
            raise ValueError(f"{owner}.target is required")
        target = _check_target(owner, table["target"])
        if target in seen:
            raise ValueError(
                f"{owner}.target {target!r} is already wrapped by wrap[{seen[target]}]"
            )
        seen[target] = index
        name = _check_name(owner, "name", table["name"]) if "name" in table else None
        wraps.append(
            WrapTarget(target=target, name=name, policy=PluginPolicy(**_check_policy(owner, table)))
        )
    return ResilienceFileConfig(groups=groups, methods=methods, policy=policy, wraps=tuple(wraps))


def split_env_list(variable: str, value: str) -> tuple[str, ...]:
    """Split a comma-separated environment value, dropping blanks; reject repeats."""
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if len(set(names)) != len(names):
        raise ValueError(f"{variable} must not repeat a name, got {value!r}")
    return names
