"""The error-recovery orchestrator: severity, patterns, decisions, failover and actions.

See ``docs/orchestrator.md``.
"""

from __future__ import annotations

from otel_resilience.orchestrator._context import (
    ActionOutcome,
    ErrorContext,
    RecoveryAction,
    RecoveryPlan,
)
from otel_resilience.orchestrator._failover import FailoverConfig, FailoverState
from otel_resilience.orchestrator._orchestrator import (
    ComponentHealth,
    ErrorRecoveryOrchestrator,
    Health,
    OrchestratorStatus,
    RecoveryHandler,
)
from otel_resilience.orchestrator._patterns import PatternTracker
from otel_resilience.orchestrator._severity import (
    DEFAULT_RULES,
    ErrorSeverity,
    SeverityClassifier,
    SeverityRule,
)
from otel_resilience.orchestrator._spans import ErrorSpanProcessor
from otel_resilience.orchestrator._table import DecisionTable

__all__ = [
    "DEFAULT_RULES",
    "ActionOutcome",
    "ComponentHealth",
    "DecisionTable",
    "ErrorContext",
    "ErrorRecoveryOrchestrator",
    "ErrorSeverity",
    "ErrorSpanProcessor",
    "FailoverConfig",
    "FailoverState",
    "Health",
    "OrchestratorStatus",
    "PatternTracker",
    "RecoveryAction",
    "RecoveryHandler",
    "RecoveryPlan",
    "SeverityClassifier",
    "SeverityRule",
]
