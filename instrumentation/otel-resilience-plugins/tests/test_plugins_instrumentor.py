"""The plugins instrumentor against a real plugin distribution found by importlib.metadata."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_resilience_plugins import (
    CONFIG_ENV,
    GROUPS_ENV,
    METHODS_ENV,
    PluginPolicy,
    ResilientPluginClass,
    ResilientPluginsInstrumentor,
)

from otel_resilience import (
    CircuitOpenError,
    CircuitState,
    ErrorRecoveryOrchestrator,
    Pipeline,
    ResilientFunction,
    RetryConfig,
)
from otel_resilience.testing import FakeClock

PLUGIN_DIST = Path(__file__).resolve().parent / "plugin_dist"
GROUP = "demo.plugins"
_DEMO_MODULES = ("demo_plugins", "demo_plugin_targets")


@pytest.fixture
def dist(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The demo plugin distribution on sys.path, its modules fresh, the environment clean."""
    for variable in (CONFIG_ENV, GROUPS_ENV, METHODS_ENV):
        monkeypatch.delenv(variable, raising=False)
    sys.path.insert(0, str(PLUGIN_DIST))
    importlib.invalidate_caches()  # importlib.metadata caches directory listings
    try:
        plugins = importlib.import_module("demo_plugins")
        targets = importlib.import_module("demo_plugin_targets")
        yield plugins, targets
    finally:
        sys.path.remove(str(PLUGIN_DIST))
        for name in _DEMO_MODULES:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()


@pytest.fixture
def instrumentor() -> Iterator[ResilientPluginsInstrumentor]:
    """The (singleton) instrumentor, uninstrumented again after the test."""
    instance = ResilientPluginsInstrumentor()
    yield instance
    if instance.is_instrumented_by_opentelemetry:
        instance.uninstrument()


def load(name: str, group: str = GROUP) -> Any:
    """Load a plugin the way an application does: through importlib.metadata."""
    (entry_point,) = importlib.metadata.entry_points(group=group, name=name)
    return entry_point.load()


def write_config(path: Path, text: str) -> Path:
    config = path / "resilience.toml"
    config.write_text(text, encoding="utf-8")
    return config


def test_the_demo_distribution_is_found(dist: tuple[ModuleType, ModuleType]) -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group=GROUP)}
    assert {"flaky", "broken", "healthy", "greeter", "settings"} <= names
    assert importlib.metadata.version("demo-plugins") == "0.1"


def test_a_function_plugin_is_retried(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    clock = FakeClock()
    instrumentor.instrument(groups=[GROUP], clock=clock)

    flaky = load("flaky")

    assert isinstance(flaky, ResilientFunction)
    assert flaky.__wrapped__ is plugins.flaky
    assert flaky.__name__ == "flaky"
    assert flaky("x") == "flaky:x"
    assert plugins.calls["flaky"] == 2
    assert len(clock.sleeps) == 1  # one backoff, on the fake clock
    assert flaky.pipeline.name == "flaky"
    assert flaky.pipeline.component == "flaky"
    breaker = flaky.pipeline.circuit_breaker
    assert breaker is not None
    assert breaker.name == "flaky"


def test_a_failing_plugin_is_isolated_by_its_own_breaker(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    instrumentor.instrument(
        groups=[GROUP],
        clock=FakeClock(),
        policy=PluginPolicy(max_attempts=3, failure_threshold=3, breaker_timeout=30.0),
    )
    broken, healthy, flaky = load("broken"), load("healthy"), load("flaky")

    with pytest.raises(ConnectionError):
        broken()
    assert plugins.calls["broken"] == 3
    broken_pipeline = instrumentor.pipeline("broken")
    assert broken_pipeline is not None
    assert broken_pipeline.circuit_breaker is not None
    assert broken_pipeline.circuit_breaker.state is CircuitState.OPEN

    with pytest.raises(CircuitOpenError) as rejected:
        broken()
    assert rejected.value.breaker_name == "broken"
    assert plugins.calls["broken"] == 3  # refused without calling the plugin

    # The other plugins have breakers of their own, still closed.
    assert healthy("a") == "healthy:a"
    assert flaky("b") == "flaky:b"
    for name in ("healthy", "flaky"):
        pipeline = instrumentor.pipeline(name)
        assert pipeline is not None
        assert pipeline.circuit_breaker is not None
        assert pipeline.circuit_breaker.state is CircuitState.CLOSED


def test_loading_twice_returns_the_same_wrapper(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    instrumentor.instrument(groups=[GROUP], clock=FakeClock())
    first = load("flaky")
    second = load("flaky")  # a fresh EntryPoint object from a fresh scan
    assert first is second
    assert load("greeter") is load("greeter")


def test_concurrent_loads_share_one_wrapper(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    instrumentor.instrument(groups=[GROUP], clock=FakeClock())
    (entry_point,) = importlib.metadata.entry_points(group=GROUP, name="healthy")
    barrier = threading.Barrier(8)
    results: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        loaded = entry_point.load()
        with lock:
            results.append(loaded)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result is results[0] for result in results)
    assert isinstance(results[0], ResilientFunction)


def test_other_groups_and_non_callables_are_left_alone(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    instrumentor.instrument(groups=[GROUP], clock=FakeClock())
    assert load("other_flaky", group="demo.other") is plugins.flaky
    assert load("settings") is plugins.SETTINGS
    assert instrumentor.pipeline("settings") is None


def test_a_class_plugin_has_its_construction_and_configured_methods_protected(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    original_greet = plugins.Greeter.__dict__["greet"]
    instrumentor.instrument(groups=[GROUP], methods=["greet"], clock=FakeClock())

    greeter_class = load("greeter")

    assert isinstance(greeter_class, ResilientPluginClass)
    assert greeter_class.__wrapped__ is plugins.Greeter
    assert greeter_class.pipeline.name == "greeter"
    greeter = greeter_class("hi")  # the first construction fails and is retried
    assert plugins.calls["Greeter"] == 2
    assert type(greeter) is plugins.Greeter
    assert isinstance(greeter, load("greeter"))  # typed Any: the proxy acts as a class
    assert issubclass(plugins.Greeter, load("greeter"))
    assert greeter.greet("bob") == "hi bob"  # the first call fails and is retried
    assert plugins.calls["greet"] == 2
    with pytest.raises(ConnectionError):
        greeter.shout("bob")  # not configured: called once, not retried
    assert plugins.calls["shout"] == 1
    # Only the instance was changed; the class and other code using it are untouched.
    assert plugins.Greeter.__dict__["greet"] is original_greet
    assert greeter_class.__doc__ == plugins.Greeter.__doc__


def test_a_class_without_instance_dict_cannot_have_methods_protected(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    instrumentor.instrument(groups=[GROUP], methods=["greet"], clock=FakeClock())
    slotted = load("slotted")
    with pytest.raises(TypeError, match=r"plugin 'slotted'.*'greet'.*Slotted"):
        slotted()


@pytest.mark.asyncio
async def test_an_async_plugin_is_retried_on_the_event_loop(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    clock = FakeClock()
    instrumentor.instrument(groups=[GROUP], clock=clock)
    async_flaky = load("async_flaky")
    assert inspect.iscoroutinefunction(async_flaky)
    assert await async_flaky("z") == "async_flaky:z"
    assert plugins.calls["async_flaky"] == 2
    assert len(clock.sleeps) == 1


def test_pipeline_factory_builds_each_plugins_pipeline_once(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    clock = FakeClock()
    asked: list[str] = []

    def factory(name: str) -> Pipeline:
        asked.append(name)
        return Pipeline(name=f"plugin.{name}", retry=RetryConfig(max_attempts=1), clock=clock)

    instrumentor.instrument(groups=[GROUP], pipeline_factory=factory)
    flaky = load("flaky")
    load("flaky")
    healthy = load("healthy")
    assert asked == ["flaky", "healthy"]
    assert flaky.pipeline.name == "plugin.flaky"
    assert healthy.pipeline is instrumentor.pipeline("healthy")
    with pytest.raises(ConnectionError):
        flaky("x")  # one attempt only: the factory's pipeline rules
    assert plugins.calls["flaky"] == 1


def test_a_factory_that_returns_no_pipeline_is_reported(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    instrumentor.instrument(groups=[GROUP], pipeline_factory=lambda name: name)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match=r"pipeline_factory\('flaky'\) must return a Pipeline"):
        load("flaky")


def test_a_suppressed_load_returns_the_plain_object(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    instrumentor.instrument(groups=[GROUP], clock=FakeClock())
    with suppress_instrumentation():
        assert load("flaky") is plugins.flaky
    assert isinstance(load("flaky"), ResilientFunction)


def test_instrument_is_idempotent_and_uninstrument_restores(
    dist: tuple[ModuleType, ModuleType],
    instrumentor: ResilientPluginsInstrumentor,
    tmp_path: Path,
) -> None:
    plugins, targets = dist
    original_load = importlib.metadata.EntryPoint.__dict__["load"]
    original_charge = targets.charge
    config = write_config(tmp_path, '[[wrap]]\ntarget = "demo_plugin_targets:charge"\n')

    instrumentor.instrument(groups=[GROUP], config_path=config, clock=FakeClock())
    patched = importlib.metadata.EntryPoint.__dict__["load"]
    assert patched is not original_load
    assert patched.__wrapped__ is original_load
    instrumentor.instrument(groups=["demo.other"], config_path=config)  # ignored: already on
    assert importlib.metadata.EntryPoint.__dict__["load"] is patched
    assert instrumentor.groups == frozenset({GROUP})
    assert isinstance(targets.charge, ResilientFunction)
    assert targets.charge.__wrapped__ is original_charge
    flaky = load("flaky")

    instrumentor.uninstrument()
    assert importlib.metadata.EntryPoint.__dict__["load"] is original_load
    assert targets.charge is original_charge
    assert instrumentor.groups == frozenset()
    assert instrumentor.wrapped_targets == ()
    assert load("flaky") is plugins.flaky  # no longer wrapped...
    assert flaky("x") == "flaky:x"  # ...but a wrapper loaded before keeps working
    assert plugins.calls["flaky"] == 2
    instrumentor.uninstrument()  # a second time does nothing
    assert importlib.metadata.EntryPoint.__dict__["load"] is original_load

    instrumentor.instrument(groups=[GROUP], clock=FakeClock())  # and it can start again
    again = load("flaky")
    assert isinstance(again, ResilientFunction)
    assert again is not flaky  # a fresh instrumentation builds fresh pipelines


def test_toml_configured_functions_and_methods_are_wrapped(
    dist: tuple[ModuleType, ModuleType],
    instrumentor: ResilientPluginsInstrumentor,
    tmp_path: Path,
) -> None:
    _, targets = dist
    original_record = targets.Ledger.__dict__["record"]
    config = write_config(
        tmp_path,
        """
[[wrap]]
target = "demo_plugin_targets:charge"
name = "billing.charge"
max_attempts = 3
timeout = 2.0
failure_threshold = 5

[[wrap]]
target = "demo_plugin_targets:Ledger.record"
max_attempts = 2
""",
    )
    clock = FakeClock()
    instrumentor.instrument(config_path=config, clock=clock)

    charge = targets.charge
    assert isinstance(charge, ResilientFunction)
    assert charge.pipeline.name == "billing.charge"
    assert charge.pipeline.timeout == 2.0
    assert charge.pipeline.circuit_breaker is not None
    assert charge.pipeline.circuit_breaker.name == "billing.charge"
    assert charge(10) == "charged 10"
    assert targets.calls["charge"] == 2
    assert targets.Ledger().record("rent") == "recorded rent"
    assert targets.calls["record"] == 2
    assert instrumentor.wrapped_targets == (
        "demo_plugin_targets:charge",
        "demo_plugin_targets:Ledger.record",
    )

    instrumentor.uninstrument()
    assert targets.Ledger.__dict__["record"] is original_record
    assert not isinstance(targets.charge, ResilientFunction)


def test_configuration_from_the_environment(
    dist: tuple[ModuleType, ModuleType],
    instrumentor: ResilientPluginsInstrumentor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugins, targets = dist
    config = write_config(
        tmp_path,
        '[plugins]\ngroups = ["demo.other"]\nmax_attempts = 2\n\n'
        '[[wrap]]\ntarget = "demo_plugin_targets:charge"\n',
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv(GROUPS_ENV, f" {GROUP} , demo.other ,")
    monkeypatch.setenv(METHODS_ENV, "greet")

    instrumentor.instrument(clock=FakeClock())

    assert instrumentor.groups == frozenset({GROUP, "demo.other"})  # the variable wins
    assert isinstance(targets.charge, ResilientFunction)  # the file's [[wrap]] applied
    other = load("other_flaky", group="demo.other")
    assert isinstance(other, ResilientFunction)
    retry = other.pipeline.retry
    assert retry is not None
    assert retry.config.max_attempts == 2  # the file's [plugins] policy
    greeter = load("greeter")("hey")
    assert greeter.greet("ann") == "hey ann"  # the variable's methods
    assert plugins.calls["greet"] == 2


def test_the_file_provides_groups_and_an_argument_beats_everything(
    dist: tuple[ModuleType, ModuleType],
    instrumentor: ResilientPluginsInstrumentor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, '[plugins]\ngroups = ["demo.other"]\n')
    instrumentor.instrument(config_path=config, clock=FakeClock())
    assert instrumentor.groups == frozenset({"demo.other"})
    instrumentor.uninstrument()

    monkeypatch.setenv(GROUPS_ENV, "demo.other")
    instrumentor.instrument(groups=[GROUP], config_path=config, clock=FakeClock())
    assert instrumentor.groups == frozenset({GROUP})


def test_nothing_is_configured_by_default(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    plugins, _ = dist
    instrumentor.instrument()
    assert instrumentor.groups == frozenset()
    assert load("flaky") is plugins.flaky


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"groups": GROUP}, TypeError, "groups must be an iterable of str"),
        ({"groups": [GROUP, GROUP]}, ValueError, r"instrument\(\).groups must not repeat"),
        ({"groups": [""]}, ValueError, r"instrument\(\).groups must not be empty"),
        ({"groups": [3]}, TypeError, r"instrument\(\).groups must be a str"),
        ({"methods": ["_private"]}, ValueError, "must name public methods"),
        ({"pipeline_factory": 3}, TypeError, "pipeline_factory must be callable"),
        ({"policy": {"max_attempts": 2}}, TypeError, "policy must be a PluginPolicy"),
        ({"clock": 3}, TypeError, "clock must implement the Clock protocol"),
    ],
)
def test_bad_arguments_are_refused(
    dist: tuple[ModuleType, ModuleType],
    instrumentor: ResilientPluginsInstrumentor,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    original_load = importlib.metadata.EntryPoint.__dict__["load"]
    with pytest.raises(error, match=message):
        instrumentor.instrument(**kwargs)
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert importlib.metadata.EntryPoint.__dict__["load"] is original_load


def test_bad_environment_values_are_refused(
    dist: tuple[ModuleType, ModuleType],
    instrumentor: ResilientPluginsInstrumentor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(METHODS_ENV, "greet,not-a-name")
    with pytest.raises(ValueError, match=f"{METHODS_ENV} must name public methods"):
        instrumentor.instrument()
    monkeypatch.setenv(METHODS_ENV, "greet")
    monkeypatch.setenv(GROUPS_ENV, "a,b,a")
    with pytest.raises(ValueError, match=f"{GROUPS_ENV} must not repeat"):
        instrumentor.instrument()
    monkeypatch.delenv(GROUPS_ENV)
    monkeypatch.setenv(CONFIG_ENV, "/nonexistent/resilience.toml")
    with pytest.raises(FileNotFoundError, match=r"resilience\.toml"):
        instrumentor.instrument()
    assert not instrumentor.is_instrumented_by_opentelemetry


def test_a_bad_wrap_target_patches_nothing(
    dist: tuple[ModuleType, ModuleType],
    instrumentor: ResilientPluginsInstrumentor,
    tmp_path: Path,
) -> None:
    _, targets = dist
    original_load = importlib.metadata.EntryPoint.__dict__["load"]
    original_charge = targets.charge
    config = write_config(
        tmp_path,
        '[[wrap]]\ntarget = "demo_plugin_targets:charge"\n\n'
        '[[wrap]]\ntarget = "demo_plugin_targets:no_such_function"\n',
    )
    with pytest.raises(ValueError, match="cannot find 'no_such_function'"):
        instrumentor.instrument(groups=[GROUP], config_path=config)
    assert targets.charge is original_charge  # the first target was rolled back
    assert importlib.metadata.EntryPoint.__dict__["load"] is original_load
    assert not instrumentor.is_instrumented_by_opentelemetry

    missing = write_config(tmp_path, '[[wrap]]\ntarget = "no_such_module_for_tests:fn"\n')
    with pytest.raises(ModuleNotFoundError):
        instrumentor.instrument(config_path=missing)
    assert not instrumentor.is_instrumented_by_opentelemetry


def test_an_orchestrator_owns_the_plugin_breakers(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(clock=FakeClock())
    instrumentor.instrument(groups=[GROUP], orchestrator=orchestrator, clock=FakeClock())
    flaky = load("flaky")
    assert flaky.pipeline.orchestrator is orchestrator
    assert flaky.pipeline.circuit_breaker is orchestrator.breaker("flaky")


def test_spans_go_to_the_given_tracer_provider(
    dist: tuple[ModuleType, ModuleType], instrumentor: ResilientPluginsInstrumentor
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(groups=[GROUP], tracer_provider=provider, clock=FakeClock())
    assert load("flaky")("x") == "flaky:x"
    names = [span.name for span in exporter.get_finished_spans()]
    assert "flaky" in names  # the logical call span is named after the plugin
    assert names.count("flaky attempt") == 2
    provider.shutdown()
