"""``call``, ``acall`` and decorator use for a strategy used on its own.

A strategy used alone runs through a one-strategy :class:`~otel_resilience.Pipeline`, so
the same two drivers run it; the pipeline is built on first use and kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from otel_resilience.pipeline import Pipeline

__all__ = ["Standalone"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class Standalone:
    """Mixin: ``call``/``acall``/decorator through a pipeline made of this strategy alone."""

    __slots__ = ()

    _pipeline: Pipeline | None

    def _build_pipeline(self) -> Pipeline:
        raise NotImplementedError

    @property
    def pipeline(self) -> Pipeline:
        """The one-strategy pipeline that ``call``, ``acall`` and decoration use."""
        pipeline = self._pipeline
        if pipeline is None:
            # The subclass declares the ``_pipeline`` slot; this mixin has none of its own.
            pipeline = self._pipeline = self._build_pipeline()  # type: ignore[misc]
        return pipeline

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` protected by this strategy."""
        return self.pipeline.call(fn, *args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` protected by this strategy."""
        return await self.pipeline.acall(fn, *args, **kwargs)

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` (sync, async, generator or method) with this strategy."""
        return self.pipeline(fn)
