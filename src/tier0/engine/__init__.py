"""The DataEngine: computation driven by the data.

- `FunctionSpec` / `Functions`: deployed code (by import path, or a package
  stored in tier0), versioned, with limits, secrets and a principal of its own;
  what a function is given is in `tier0.engine._context`.
- `TriggerSpec` / `Triggers`: which events (by bucket, prefix, suffix, type,
  and a SQL filter compiled by `compile_filter`), stream messages, or cron
  times run a function.
- `Dispatcher`: events, messages and due times become durable invocations,
  one each per trigger; `Runner`: leases, retries with backoff, the dead letter.
- `EngineLoop`: the engine of one process, handing leased invocations to a
  runtime: worker processes (`tier0.engine._pool`) or Ray (`tier0.engine._ray`).
- Streams (`tier0.engine._streams`), pipelines (`tier0.engine._pipelines`) and
  the built-in functions (`tier0.engine.builtins`).

Users reach it as ``t0.engine`` and ``t0.streams`` (`tier0.engine._api`), the
``tier0 fn``/``trigger``/``stream``/``pipeline`` commands and ``/_tier0/`` routes.
"""

from __future__ import annotations

from tier0.engine._dispatch import Dispatcher, DispatchReport, TriggerInfo, Triggers
from tier0.engine._events import Event, EventLog
from tier0.engine._filters import compile_filter
from tier0.engine._functions import FunctionInfo, Functions, FunctionSpec, zip_directory
from tier0.engine._pipelines import Pipeline
from tier0.engine._runner import Invocation, Outcome, Runner, RunReport
from tier0.engine._service import EngineLoop, EngineStatistics
from tier0.engine._streams import Message, StreamInfo
from tier0.engine._triggers import ALIASES, EVENT_TYPES, TriggerSpec

__all__ = [
    "ALIASES",
    "EVENT_TYPES",
    "DispatchReport",
    "Dispatcher",
    "EngineLoop",
    "EngineStatistics",
    "Event",
    "EventLog",
    "FunctionInfo",
    "FunctionSpec",
    "Functions",
    "Invocation",
    "Message",
    "Outcome",
    "Pipeline",
    "RunReport",
    "Runner",
    "StreamInfo",
    "TriggerInfo",
    "TriggerSpec",
    "Triggers",
    "compile_filter",
    "zip_directory",
]
