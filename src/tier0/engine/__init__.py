"""The DataEngine. So far: the event log that triggers and functions will consume."""

from __future__ import annotations

from tier0.engine._events import Event, EventLog

__all__ = ["Event", "EventLog"]
