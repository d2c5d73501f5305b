"""The configuration file and the configuration dataclasses: every error names its place."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from otel_resilience_plugins import (
    DEFAULT_BREAKER_TIMEOUT,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_MAX_ATTEMPTS,
    PluginPolicy,
    ResilienceFileConfig,
    WrapTarget,
    load_config,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "app.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    policy = PluginPolicy()
    assert policy.max_attempts == DEFAULT_MAX_ATTEMPTS == 3
    assert policy.failure_threshold == DEFAULT_FAILURE_THRESHOLD == 5
    assert policy.breaker_timeout == DEFAULT_BREAKER_TIMEOUT == 60.0
    assert policy.timeout is None
    assert policy.attempt_timeout is None
    assert WrapTarget(target="a.b:c").component == "a.b:c"
    assert WrapTarget(target="a.b:c", name="c").component == "c"


def test_a_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[plugins]
groups = ["a.plugins", "b.plugins"]
methods = ["run", "close"]
max_attempts = 4
timeout = 5
attempt_timeout = 1.5
failure_threshold = 2
breaker_timeout = 10

[[wrap]]
target = "myapp.billing:charge"
name = "billing.charge"
max_attempts = 3
timeout = 2.0
failure_threshold = 5

[[wrap]]
target = "myapp.ledger:Ledger.record"
""",
    )
    config = load_config(path)
    assert config.groups == ("a.plugins", "b.plugins")
    assert config.methods == ("run", "close")
    assert config.policy == PluginPolicy(
        max_attempts=4, timeout=5.0, attempt_timeout=1.5, failure_threshold=2, breaker_timeout=10.0
    )
    assert isinstance(config.policy.timeout, float)
    assert config.wraps == (
        WrapTarget(
            target="myapp.billing:charge",
            name="billing.charge",
            policy=PluginPolicy(max_attempts=3, timeout=2.0, failure_threshold=5),
        ),
        WrapTarget(target="myapp.ledger:Ledger.record"),
    )


def test_an_empty_file_configures_nothing(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == ResilienceFileConfig()
    assert load_config(write(tmp_path, "[plugins]\ngroups = []\n")).groups == ()


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("[[wrap]]\nname = 'x'\n", ValueError, "wrap[0].target is required"),
        (
            "[[wrap]]\ntarget = 'a:b'\n[[wrap]]\ntarget = 'a:c'\nmax_attempts = 0\n",
            ValueError,
            "wrap[1].max_attempts must be >= 1, got 0",
        ),
        ("[[wrap]]\ntarget = 'a:b'\nmax_attempts = true\n", TypeError, "wrap[0].max_attempts"),
        ("[[wrap]]\ntarget = 'a:b'\nmax_attempts = 2.5\n", TypeError, "wrap[0].max_attempts"),
        (
            "[[wrap]]\ntarget = 'a:b'\ntimeout = '2'\n",
            TypeError,
            "wrap[0].timeout must be a number",
        ),
        ("[[wrap]]\ntarget = 'a:b'\ntimeout = 0\n", ValueError, "wrap[0].timeout must be > 0"),
        ("[[wrap]]\ntarget = 'a:b'\ntimeout = -1.0\n", ValueError, "wrap[0].timeout must be > 0"),
        ("[[wrap]]\ntarget = 'a:b'\ntimeout = nan\n", ValueError, "wrap[0].timeout must be finite"),
        ("[[wrap]]\ntarget = 'a:b'\ntimeout = inf\n", ValueError, "wrap[0].timeout must be finite"),
        (
            "[[wrap]]\ntarget = 'a:b'\ntimeout = 1.0\nattempt_timeout = 2.0\n",
            ValueError,
            "wrap[0].attempt_timeout must be <= timeout",
        ),
        (
            "[[wrap]]\ntarget = 'a:b'\nfailure_threshold = 0\n",
            ValueError,
            "wrap[0].failure_threshold must be >= 1",
        ),
        (
            "[[wrap]]\ntarget = 'a:b'\nbreaker_timeout = 0\n",
            ValueError,
            "wrap[0].breaker_timeout must be > 0",
        ),
        (
            "[[wrap]]\ntarget = 'a:b'\nretries = 2\n",
            ValueError,
            "wrap[0] has unknown key 'retries'",
        ),
        ("[[wrap]]\ntarget = 'a.b'\n", ValueError, "wrap[0].target must look like"),
        ("[[wrap]]\ntarget = ':b'\n", ValueError, "wrap[0].target must look like"),
        ("[[wrap]]\ntarget = 3\n", TypeError, "wrap[0].target must be a"),
        ("[[wrap]]\ntarget = 'a:b'\nname = ''\n", ValueError, "wrap[0].name must not be empty"),
        ("[[wrap]]\ntarget = 'a:b'\nname = 1\n", TypeError, "wrap[0].name must be a str"),
        (
            "[[wrap]]\ntarget = 'a:b'\n[[wrap]]\ntarget = 'a:b'\n",
            ValueError,
            "wrap[1].target 'a:b' is already wrapped by wrap[0]",
        ),
        ("wrap = 3\n", TypeError, "wrap must be an array of tables"),
        ("wrap = [3]\n", TypeError, "wrap[0] must be a table"),
        ("[retry]\nmax_attempts = 2\n", ValueError, "unknown table or key 'retry'"),
        ("[plugins]\ngroups = 'a'\n", TypeError, "plugins.groups must be a list of str"),
        ("[plugins]\ngroups = ['a', 'a']\n", ValueError, "plugins.groups must not repeat"),
        ("[plugins]\ngroups = ['']\n", ValueError, "plugins.groups must not be empty"),
        ("[plugins]\nmethods = ['_secret']\n", ValueError, "plugins.methods must name public"),
        ("[plugins]\nmethods = ['not a name']\n", ValueError, "plugins.methods must name public"),
        ("[plugins]\nmax_attempts = -1\n", ValueError, "plugins.max_attempts must be >= 1"),
        ("[plugins]\ntarget = 'a:b'\n", ValueError, "plugins has unknown key 'target'"),
        ("plugins = 1\n", TypeError, "plugins must be a table"),
        ("[[wrap]\n", ValueError, "invalid TOML"),
    ],
)
def test_errors_name_the_file_the_table_and_the_key(
    tmp_path: Path, text: str, error: type[Exception], message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(error, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        load_config(path)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_bytes(b"[plugins]\ngroups = ['\xff']\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_config(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_attempts": 0}, ValueError, "PluginPolicy.max_attempts must be >= 1"),
        ({"max_attempts": True}, TypeError, "PluginPolicy.max_attempts must be an int"),
        ({"max_attempts": "3"}, TypeError, "PluginPolicy.max_attempts must be an int"),
        ({"timeout": math.nan}, ValueError, "PluginPolicy.timeout must be finite"),
        ({"timeout": math.inf}, ValueError, "PluginPolicy.timeout must be finite"),
        ({"timeout": 0}, ValueError, "PluginPolicy.timeout must be > 0"),
        ({"attempt_timeout": -1}, ValueError, "PluginPolicy.attempt_timeout must be > 0"),
        (
            {"timeout": 1.0, "attempt_timeout": 1.5},
            ValueError,
            "PluginPolicy.attempt_timeout must be <= timeout",
        ),
        ({"failure_threshold": 0}, ValueError, "PluginPolicy.failure_threshold must be >= 1"),
        ({"breaker_timeout": False}, TypeError, "PluginPolicy.breaker_timeout must be a number"),
        ({"breaker_timeout": 0.0}, ValueError, "PluginPolicy.breaker_timeout must be > 0"),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        PluginPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"target": "nomodule"}, ValueError, "WrapTarget.target must look like"),
        ({"target": " a:b"}, ValueError, "WrapTarget.target must look like"),
        ({"target": b"a:b"}, TypeError, "WrapTarget.target must be a"),
        ({"target": "a:b", "name": ""}, ValueError, "WrapTarget.name must not be empty"),
        ({"target": "a:b", "policy": {}}, TypeError, "WrapTarget.policy must be a PluginPolicy"),
    ],
)
def test_wrap_target_validation(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        WrapTarget(**kwargs)


def test_the_policy_stores_floats_and_is_frozen() -> None:
    policy = PluginPolicy(timeout=2, breaker_timeout=5)
    assert policy.timeout == 2.0
    assert isinstance(policy.timeout, float)
    assert isinstance(policy.breaker_timeout, float)
    with pytest.raises(AttributeError):
        policy.timeout = 3.0  # type: ignore[misc]
