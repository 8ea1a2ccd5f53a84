"""The DataEngine. So far: the event log that triggers and functions will consume, and
what a trigger matches (`TriggerSpec`, with filters compiled by `compile_filter`)."""

from __future__ import annotations

from tier0.engine._events import Event, EventLog
from tier0.engine._filters import compile_filter
from tier0.engine._triggers import ALIASES, EVENT_TYPES, TriggerSpec

__all__ = ["ALIASES", "EVENT_TYPES", "Event", "EventLog", "TriggerSpec", "compile_filter"]
