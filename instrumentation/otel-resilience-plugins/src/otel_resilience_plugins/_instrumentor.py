"""The instrumentor: plugin entry points and configured functions run through pipelines.

The seam is ``importlib.metadata.EntryPoint.load``. While instrumented, loading an entry
point of a configured group returns the loaded object protected by the plugin's own
pipeline (named after the entry point): a function becomes a :class:`ResilientFunction`,
a class a :class:`ResilientPluginClass`. Other groups, and objects that are not callable
(modules, constants, instances without ``__call__``), pass through unchanged.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import wrapt

# The module opts out of type checking (a file-wide ignore), so mypy sees no names in it.
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.instrumentation.utils import unwrap as unwrap_attribute

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    Pipeline,
    ResilientFunction,
    RetryConfig,
    resilient,
    unwrap,
    wrap,
)
from otel_resilience._clock import Clock
from otel_resilience_plugins._config import (
    CONFIG_ENV,
    GROUPS_ENV,
    METHODS_ENV,
    PluginPolicy,
    ResilienceFileConfig,
    _check_methods,
    _check_names,
    load_config,
    split_env_list,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience import ErrorRecoveryOrchestrator

__all__ = ["MAX_CACHED_PLUGINS", "ResilientPluginClass", "ResilientPluginsInstrumentor"]

_logger = logging.getLogger("otel_resilience_plugins")

MAX_CACHED_PLUGINS = 1024
"""Loaded plugins (and per-plugin pipelines) remembered; the oldest is forgotten past it."""

PipelineFactory = Callable[[str], Pipeline]
_Key = tuple[str, str, str]


class ResilientPluginClass(wrapt.ObjectProxy[type[Any]]):
    """A plugin class whose construction, and configured methods, run through a pipeline.

    Calling it constructs an instance through the plugin's pipeline (so a failing
    constructor is retried and counted by the plugin's breaker). On the new instance, each
    method named in ``methods`` that exists and is callable is replaced, on that instance
    only, by a protected version using the same pipeline: the class itself is never
    modified. Attribute access, ``isinstance`` and ``issubclass`` see the original class.
    """

    _self_pipeline: Pipeline
    _self_methods: tuple[str, ...]

    def __init__(self, cls: type[Any], pipeline: Pipeline, methods: tuple[str, ...]) -> None:
        super().__init__(cls)
        self._self_pipeline = pipeline
        self._self_methods = methods

    @property
    def pipeline(self) -> Pipeline:
        """The plugin's pipeline."""
        return self._self_pipeline

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cls = self.__wrapped__

        def construct() -> Any:
            return cls(*args, **kwargs)

        instance = self._self_pipeline.call(construct)
        for method in self._self_methods:
            bound = getattr(instance, method, None)
            if bound is None or not callable(bound) or isinstance(bound, ResilientFunction):
                continue
            try:
                setattr(instance, method, resilient(self._self_pipeline)(bound))
            except (AttributeError, TypeError) as exc:
                raise TypeError(
                    f"plugin {self._self_pipeline.name!r}: cannot protect method {method!r} on "
                    f"instances of {cls.__qualname__} ({exc}); remove it from the configured "
                    "methods or give the class an instance __dict__"
                ) from exc
        return instance

    def __instancecheck__(self, instance: object) -> bool:
        return isinstance(instance, self.__wrapped__)

    def __subclasscheck__(self, subclass: type[Any]) -> bool:
        return issubclass(subclass, self.__wrapped__)


class ResilientPluginsInstrumentor(BaseInstrumentor):  # type: ignore[misc] # untyped base
    """Protect plugins loaded from entry points, and functions named in a TOML file.

    ``instrument()`` wraps ``importlib.metadata.EntryPoint.load``: an entry point of a
    configured group loads protected by a pipeline and breaker of its own, named after
    the entry point, so one failing plugin is retried, then isolated by its open breaker,
    while the others keep working. The ``[[wrap]]`` tables of the configuration file are
    patched in place with :func:`otel_resilience.wrap`. ``uninstrument()`` restores
    ``EntryPoint.load`` and unpatches the targets; plugins already loaded keep their
    protection.

    Loading the same entry point twice returns the same wrapper. A load made while
    instrumentation is suppressed (the OpenTelemetry suppression context key) returns the
    plain object. Like every OpenTelemetry instrumentor this class is a singleton.

    Example:
        >>> from otel_resilience_plugins import ResilientPluginsInstrumentor
        >>> instrumentor = ResilientPluginsInstrumentor()
        >>> instrumentor.instrument(groups=["myapp.plugins"])
        >>> instrumentor.groups
        frozenset({'myapp.plugins'})
        >>> instrumentor.uninstrument()
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _active: bool = False
    _groups: frozenset[str] = frozenset()
    _methods: tuple[str, ...] = ()
    _policy: PluginPolicy = PluginPolicy()
    _factory: PipelineFactory | None = None
    _clock: Clock | None = None
    _tracer_provider: TracerProvider | None = None
    _meter_provider: MeterProvider | None = None
    _orchestrator: ErrorRecoveryOrchestrator | None = None
    _loaded: dict[_Key, tuple[object, object]]
    _pipelines: dict[str, Pipeline]
    _wrapped: list[str]

    def instrumentation_dependencies(self) -> Collection[str]:
        """Nothing to require: ``importlib.metadata`` is part of the standard library."""
        return ()

    def instrument(
        self,
        *,
        groups: Iterable[str] | None = None,
        pipeline_factory: PipelineFactory | None = None,
        config_path: str | os.PathLike[str] | None = None,
        methods: Iterable[str] | None = None,
        policy: PluginPolicy | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        orchestrator: ErrorRecoveryOrchestrator | None = None,
        clock: Clock | None = None,
        skip_dep_check: bool = False,
        raise_exception_on_conflict: bool = False,
    ) -> None:
        """Start protecting plugins and configured functions; a second call does nothing.

        Each setting comes from the argument, else the environment, else the configuration
        file, else the default.

        Args:
            groups: entry-point groups whose plugins are protected
                (``OTEL_RESILIENCE_PLUGIN_GROUPS``, comma-separated; ``[plugins] groups``).
            pipeline_factory: ``factory(plugin_name) -> Pipeline``, called once per plugin,
                replacing the default pipeline built from ``policy``.
            config_path: the TOML file (``OTEL_RESILIENCE_CONFIG``); its ``[[wrap]]``
                tables are patched in place.
            methods: method names protected on the instances of plugin classes
                (``OTEL_RESILIENCE_PLUGIN_METHODS``; ``[plugins] methods``). Default: none,
                only construction is protected.
            policy: the default pipeline's settings for plugins (``[plugins]`` keys).
            tracer_provider: report to this provider instead of the global one.
            meter_provider: as ``tracer_provider``.
            orchestrator: consulted by every pipeline built here; breakers then come from
                its registry (component = plugin or target name).
            clock: time source of the pipelines built here (tests pass a ``FakeClock``).
            skip_dep_check: as for every ``BaseInstrumentor``.
            raise_exception_on_conflict: as for every ``BaseInstrumentor``.

        Raises:
            TypeError, ValueError: a bad argument, environment value or file entry (the
                message names it); nothing is patched then.
            ImportError: a ``[[wrap]]`` target's module cannot be imported.
        """
        super().instrument(
            groups=groups,
            pipeline_factory=pipeline_factory,
            config_path=config_path,
            methods=methods,
            policy=policy,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            orchestrator=orchestrator,
            clock=clock,
            skip_dep_check=skip_dep_check,
            raise_exception_on_conflict=raise_exception_on_conflict,
        )

    def uninstrument(self) -> None:
        """Restore ``EntryPoint.load`` and unpatch the ``[[wrap]]`` targets.

        Plugins loaded while instrumented keep their protection. A second call does nothing.
        """
        super().uninstrument()

    @property
    def groups(self) -> frozenset[str]:
        """The entry-point groups currently protected (empty when not instrumented)."""
        return self._groups if self._active else frozenset()

    @property
    def wrapped_targets(self) -> tuple[str, ...]:
        """The ``[[wrap]]`` targets currently patched by this instrumentor."""
        return tuple(self._wrapped) if self._active else ()

    def pipeline(self, plugin: str) -> Pipeline | None:
        """The pipeline of a plugin loaded so far, by entry point name, or ``None``."""
        if not self._active:
            return None
        with self._lock:
            return self._pipelines.get(plugin)

    # -- BaseInstrumentor hooks ------------------------------------------------------

    def _instrument(self, **kwargs: Any) -> None:
        factory = kwargs["pipeline_factory"]
        if factory is not None and not callable(factory):
            raise TypeError(
                f"pipeline_factory must be callable, got {type(factory).__name__} {factory!r}"
            )
        policy = kwargs["policy"]
        if policy is not None and not isinstance(policy, PluginPolicy):
            raise TypeError(f"policy must be a PluginPolicy, got {type(policy).__name__}")
        clock = kwargs["clock"]
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must implement the Clock protocol, got {type(clock).__name__}")

        config_path = kwargs["config_path"]
        if config_path is None:
            config_path = os.environ.get(CONFIG_ENV, "").strip() or None
        file = load_config(config_path) if config_path is not None else ResilienceFileConfig()

        groups = _names_setting("groups", kwargs["groups"], GROUPS_ENV, file.groups)
        methods = _names_setting("methods", kwargs["methods"], METHODS_ENV, file.methods)

        self._groups = frozenset(groups)
        self._methods = methods
        self._policy = policy if policy is not None else file.policy
        self._factory = factory
        self._clock = clock
        self._tracer_provider = kwargs["tracer_provider"]
        self._meter_provider = kwargs["meter_provider"]
        self._orchestrator = kwargs["orchestrator"]
        self._loaded = {}
        self._pipelines = {}
        self._wrapped = []
        try:
            for spec in file.wraps:
                wrap(spec.target, self._build_pipeline(spec.component, spec.policy))
                self._wrapped.append(spec.target)
        except BaseException:
            self._unwrap_targets()
            raise
        wrapt.wrap_function_wrapper(importlib.metadata.EntryPoint, "load", self._load)
        self._active = True

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        unwrap_attribute(importlib.metadata.EntryPoint, "load")
        self._unwrap_targets()
        with self._lock:
            self._loaded = {}
            self._pipelines = {}

    # -- internals ---------------------------------------------------------------------

    def _unwrap_targets(self) -> None:
        while self._wrapped:
            target = self._wrapped.pop()
            try:
                unwrap(target)
            except (ValueError, ImportError) as exc:
                # Someone else unpatched it (or its module is gone): nothing left to restore.
                _logger.debug("could not unwrap %s: %s", target, exc)

    def _load(
        self,
        wrapped: Callable[..., Any],
        instance: importlib.metadata.EntryPoint,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if not is_instrumentation_enabled() or not self._active:
            return wrapped(*args, **kwargs)
        if instance.group not in self._groups:
            return wrapped(*args, **kwargs)
        return self._protect(instance, wrapped(*args, **kwargs))

    def _protect(self, entry_point: importlib.metadata.EntryPoint, loaded: object) -> object:
        key: _Key = (entry_point.group, entry_point.name, entry_point.value)
        with self._lock:
            cached = self._loaded.get(key)
        if cached is not None and cached[0] is loaded:
            return cached[1]
        if not callable(loaded) or isinstance(loaded, ResilientFunction | ResilientPluginClass):
            return loaded  # nothing to call, or protected by its author already
        pipeline = self._plugin_pipeline(entry_point.name)
        protected: object
        if isinstance(loaded, type):
            protected = ResilientPluginClass(loaded, pipeline, self._methods)
        else:
            protected = resilient(pipeline)(loaded)
        with self._lock:
            cached = self._loaded.get(key)
            if cached is not None and cached[0] is loaded:
                return cached[1]  # another thread loaded it first: share its wrapper
            _remember(self._loaded, key, (loaded, protected))
        return protected

    def _plugin_pipeline(self, plugin: str) -> Pipeline:
        with self._lock:
            pipeline = self._pipelines.get(plugin)
        if pipeline is not None:
            return pipeline
        # Built outside the lock: the factory is user code.
        if self._factory is not None:
            pipeline = self._factory(plugin)
            if not isinstance(pipeline, Pipeline):
                raise TypeError(
                    f"pipeline_factory({plugin!r}) must return a Pipeline, "
                    f"got {type(pipeline).__name__}"
                )
        else:
            pipeline = self._build_pipeline(plugin, self._policy)
        with self._lock:
            existing = self._pipelines.get(plugin)
            if existing is not None:
                return existing
            _remember(self._pipelines, plugin, pipeline)
        return pipeline

    def _build_pipeline(self, name: str, policy: PluginPolicy) -> Pipeline:
        config = CircuitBreakerConfig(
            failure_threshold=policy.failure_threshold, timeout_seconds=policy.breaker_timeout
        )
        if self._orchestrator is not None:
            breaker = self._orchestrator.register_circuit_breaker(name, config)
        else:
            breaker = CircuitBreaker(
                name,
                config,
                clock=self._clock,
                tracer_provider=self._tracer_provider,
                meter_provider=self._meter_provider,
            )
        return Pipeline(
            name=name,
            timeout=policy.timeout,
            retry=RetryConfig(max_attempts=policy.max_attempts),
            circuit_breaker=breaker,
            attempt_timeout=policy.attempt_timeout,
            clock=self._clock,
            tracer_provider=self._tracer_provider,
            meter_provider=self._meter_provider,
            orchestrator=self._orchestrator,
            component=name,
        )


def _names_setting(
    argument: str, value: Iterable[str] | None, variable: str, from_file: tuple[str, ...] | None
) -> tuple[str, ...]:
    if value is not None:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise TypeError(
                f"{argument} must be an iterable of str (not a str), got {type(value).__name__}"
            )
        if argument == "methods":
            return _check_methods("instrument()", list(value))
        return _check_names("instrument()", argument, list(value))
    from_env = os.environ.get(variable)
    if from_env is not None and from_env.strip():
        names = split_env_list(variable, from_env)
        if argument == "methods":
            for name in names:
                if not name.isidentifier() or name.startswith("_"):
                    raise ValueError(
                        f"{variable} must name public methods (identifiers not starting "
                        f"with '_'), got {name!r}"
                    )
        return names
    return from_file if from_file is not None else ()


def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= MAX_CACHED_PLUGINS:
        del cache[next(iter(cache))]  # the oldest: dicts keep insertion order
    cache[key] = value
