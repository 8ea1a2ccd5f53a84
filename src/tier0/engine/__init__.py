"""The DataEngine. So far: the event log, what a trigger matches (`TriggerSpec`, with
filters compiled by `compile_filter`), stored triggers (`Triggers`), and the
`Dispatcher` that turns matching events into durable invocations, exactly one
per event and trigger, and the `Runner` that leases and runs them (retries with
backoff, dead letter). Worker processes, Ray and the API come next."""

from __future__ import annotations

from tier0.engine._dispatch import Dispatcher, DispatchReport, TriggerInfo, Triggers
from tier0.engine._events import Event, EventLog
from tier0.engine._filters import compile_filter
from tier0.engine._functions import FunctionInfo, Functions, FunctionSpec, zip_directory
from tier0.engine._runner import Invocation, Outcome, Runner, RunReport
from tier0.engine._service import EngineLoop
from tier0.engine._triggers import ALIASES, EVENT_TYPES, TriggerSpec

__all__ = [
    "ALIASES",
    "EVENT_TYPES",
    "DispatchReport",
    "Dispatcher",
    "EngineLoop",
    "Event",
    "EventLog",
    "FunctionInfo",
    "FunctionSpec",
    "Functions",
    "Invocation",
    "Outcome",
    "RunReport",
    "Runner",
    "TriggerInfo",
    "TriggerSpec",
    "Triggers",
    "compile_filter",
    "zip_directory",
]
