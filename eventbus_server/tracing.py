"""OpenTelemetry spans, only when configured (DESIGN.md §13).

    emit        receive → commit, one per event, parented on metadata.traceparent
    rule.fire   one per firing (rule id, event id, firing id, attempts), parented the same way
    tool.call   one per tool call, inside rule.fire

Tracing is on once a tracer provider is in use: `configure_from_env()` (what
`eventbus serve` calls) builds one from the standard `OTEL_*` variables when
`OTEL_TRACES_EXPORTER` names an exporter and the SDK is installed, or adopts
the one already installed (`opentelemetry-instrument eventbus serve`);
`use(provider)` sets one directly (an embedding program, the tests). Off, a
span is one test of a module global: the emit path does nothing more.

Trace context flows without the SDK too: what an event causes carries a
child of its `traceparent` (eventbus_core.tracecontext). With spans, the
child's parent id is the span that caused it (rule.fire, tool.call), so the
trace shows the chain.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from eventbus_core.tracecontext import child_of, traceparent_of

__all__ = [
    "configure_from_env",
    "disable",
    "enabled",
    "outgoing_traceparent",
    "span",
    "start_span",
    "use",
]

log = logging.getLogger("eventbus.tracing")

_tracer: Any = None
_propagator: Any = None


def enabled() -> bool:
    return _tracer is not None


def use(provider: Any) -> None:
    """Record spans through this tracer provider (an OpenTelemetry SDK `TracerProvider`)."""
    global _tracer, _propagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _tracer = provider.get_tracer("eventbus")
    _propagator = TraceContextTextMapPropagator()


def disable() -> None:
    global _tracer, _propagator
    _tracer = _propagator = None


def configure_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Turn spans on as the `OTEL_*` variables say; whether they are on."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    provider = trace.get_tracer_provider()
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        exporters = [
            name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()
        ]
        if not exporters or exporters == ["none"]:
            return False
        provider = _sdk_provider(exporters)
        if provider is None:
            return False
        trace.set_tracer_provider(provider)
    use(provider)
    log.info("tracing on: spans emit, rule.fire and tool.call")
    return True


def _sdk_provider(exporters: list[str]) -> Any:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_TRACES_EXPORTER is set but opentelemetry-sdk is not installed: no spans")
        return None
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "eventbus")})
    )
    for name in exporters:
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning("OTEL_TRACES_EXPORTER: no exporter %r is installed; skipped", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(next(iter(found)).load()()))
    return provider


def _parent(metadata: dict[str, Any] | None) -> Any:
    """The OpenTelemetry context of an event's traceparent (None: the current one)."""
    parent = traceparent_of(metadata)
    if parent is None:
        return None
    return _propagator.extract({"traceparent": str(parent)})


def start_span(name: str, metadata: dict[str, Any] | None, attributes: dict[str, Any]) -> Any:
    """A span the caller ends (`emit`: it ends at the commit, in another callback); None when off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, context=_parent(metadata), attributes=attributes)


@contextlib.contextmanager
def span(
    name: str, attributes: dict[str, Any], metadata: dict[str, Any] | None = None
) -> Iterator[Any]:
    """A span around a block, current inside it; parented on `metadata`'s traceparent when
    given, else on the current span. Yields None when tracing is off."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(
        name, context=_parent(metadata), attributes=attributes
    ) as current:
        yield current


def outgoing_traceparent(metadata: dict[str, Any] | None) -> str | None:
    """The traceparent for what an event causes now: the current span's context when
    spans are on, else a child of the event's own (None when it has none)."""
    if _tracer is not None:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return (
                f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
            )
    return child_of(metadata)
