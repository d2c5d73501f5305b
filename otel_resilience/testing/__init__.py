"""Helpers for testing code that uses otel-resilience (and for testing otel-resilience).

- :class:`FakeClock`: pass it as ``clock=``; sleeping advances fake time at once, and
  ``advance()`` moves time for breakers, timeouts and budgets.
- :func:`set_testing`: a switch for your own test suite that turns retry waits off and
  caps attempts (usable as a context manager).
- Fault injection: :func:`flaky`, :func:`aflaky`, :func:`fail_with`, :func:`afail_with`,
  :class:`FaultInjector` and :func:`slow` make dependencies that fail, on a script or at
  random, or take (fake) time.
"""

from __future__ import annotations

from otel_resilience.testing._fake_clock import FakeClock
from otel_resilience.testing._faults import (
    AsyncFailingCall,
    AsyncScriptedCall,
    ErrorSpec,
    FailingCall,
    FaultInjector,
    ScriptedCall,
    ScriptExhaustedError,
    afail_with,
    aflaky,
    fail_with,
    flaky,
    slow,
)
from otel_resilience.testing._switch import TestingSwitch, is_testing, set_testing

__all__ = [
    "AsyncFailingCall",
    "AsyncScriptedCall",
    "ErrorSpec",
    "FailingCall",
    "FakeClock",
    "FaultInjector",
    "ScriptExhaustedError",
    "ScriptedCall",
    "TestingSwitch",
    "afail_with",
    "aflaky",
    "fail_with",
    "flaky",
    "is_testing",
    "set_testing",
    "slow",
]
