"""Ingest-to-searchable: from a text object's PUT to semantic search returning it.

A trigger on the bucket (``created``) runs the built-in embedding function
(`tier0.engine.builtins.embedding`: ``t0.index`` reads the event log since
its cursor and embeds new elements' passages with all-MiniLM-L6-v2 into
``<bucket>/_passages``) on one of the engine's worker processes (woken by
the commit, nothing polled; the model loaded once by the worker's ``init``). The
writer waits on the event log for the commit of the document's passages
(blocking, no polling) and then searches for its sentence, which must return it as the nearest element; the
time from the PUT's start to that answer is the figure. The baseline is the floor of the same work done inline, in the
writer's thread: the PUT, then ``t0.index``, then the one search that finds it.
Each document is a fresh sentence, so every search is a real one.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from _common import Context, Section, open_store

BUCKET = "kbase"
PASSAGES = "_passages"
_SUBJECTS = ("the harbour", "a violin", "the glacier", "our compiler", "the bakery",
             "a comet", "the orchard", "this protocol", "the lighthouse", "a beehive")  # fmt: skip
_VERBS = ("quietly measures", "slowly reshapes", "carefully stores", "briefly warms",
          "steadily guards", "gently sorts")  # fmt: skip
_OBJECTS = ("the winter tides", "seven copper wires", "a forgotten recipe", "the night sky",
            "old tax records", "fresh mountain snow", "every lost packet")  # fmt: skip


def sentence(n: int) -> str:
    return (
        f"Document {n}: {_SUBJECTS[n % 10]} {_VERBS[n % 6]} {_OBJECTS[n % 7]}"
        f" near marker {n * 7919 % 10007}."
    )


def _passages_committed(t0: Any, after: int) -> tuple[bool, int]:
    """Whether the events after ``after`` (waiting up to 1 s for some) include passages
    inserted, and the last event seen."""
    for event in t0.events.wait(after, timeout_s=1.0):
        after = event.seq
        if event.type == "TableRowsInserted" and (event.bucket, event.key) == (BUCKET, PASSAGES):
            return True, after
    return False, after


def _found(t0: Any, text: str, key: str) -> bool:
    hits = t0.search(text, bucket=BUCKET, k=1, elements=True)
    return bool(hits.num_rows) and hits.column("key")[0].as_py() == key


def run(context: Context) -> Section:
    from tier0.engine.builtins import embedding

    count = 10 if context.quick else 60
    section = Section(
        "searchable", f"Ingest-to-searchable: {count} text PUTs, until semantic search returns each"
    )
    with context.scratch("searchable") as directory, open_store(directory) as t0:
        t0.create_bucket(BUCKET)
        function, trigger = embedding(BUCKET)
        t0.engine.deploy(function)
        t0.engine.add_trigger(trigger)
        lock = threading.Lock()  # the inline floor's passes, one at a time
        # Warm the model and the caches before measuring.
        loop = t0.engine.start(workers=2)
        cursor = t0.events.latest_seq()
        t0.put(BUCKET, "warm.txt", sentence(10_000).encode())  # the worker loads the model
        deadline = time.perf_counter() + 120
        found = False
        while not found:
            found, cursor = _passages_committed(t0, cursor)
            assert time.perf_counter() < deadline, "the embedding worker did not start"
        t0.index(BUCKET)  # the inline floor's model, loaded here too
        assert _found(t0, sentence(10_000), "warm.txt")
        latencies = []
        try:
            for n in range(count):
                key, text = f"docs/{n}.txt", sentence(n)
                cursor = t0.events.latest_seq()
                started = time.perf_counter()
                t0.put(BUCKET, key, text.encode(), content_type="text/plain")
                # Wait for the commit of its passages on the event log (blocking on the
                # commit signal: polling with queries or searches would take the CPU
                # from the embedding it waits for), then search once.
                while True:
                    found, cursor = _passages_committed(t0, cursor)
                    if found:
                        break
                    if time.perf_counter() - started > 60:
                        raise AssertionError(f"{key} was not embedded within 60 s")
                assert _found(t0, text, key), f"{key} is embedded but not found"
                latencies.append(time.perf_counter() - started)
        finally:
            loop.close()
        # The floor: the same work inline (no trigger, no loop).
        inline = []
        for n in range(count, count + max(5, count // 4)):
            key, text = f"inline/{n}.txt", sentence(n)
            started = time.perf_counter()
            t0.put(BUCKET, key, text.encode(), content_type="text/plain")
            with lock:
                t0.index(BUCKET)
            assert _found(t0, text, key)
            inline.append(time.perf_counter() - started)

    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    floor = sorted(inline)
    section.add(
        "PUT to searchable, p50", p50, "s", "PUT + index + search inline, p50",
        statistics.median(floor), higher_is_better=False,
    )  # fmt: skip
    section.add(
        "PUT to searchable, p99", p99, "s", "PUT + index + search inline, slowest",
        floor[-1], higher_is_better=False,
    )  # fmt: skip
    section.facts["engine loop failures"] = loop.failures
    section.notes.append(
        "the writer waits on the event log for the commit of the document's passages"
        " (blocking on the commit signal), then runs the search that returns it: tier0's"
        " time is the PUT, the trigger, the embedding and that search"
    )
    return section
