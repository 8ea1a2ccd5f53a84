"""An inserter for the table crash test: appends batches until killed.

Run as ``python -m tests.db.crash_inserter DATA META TABLE``. Batch ``b``
holds the ids ``b * BATCH_ROWS`` up to ``(b + 1) * BATCH_ROWS - 1``; after
``insert`` returned, the inserter prints the rows acknowledged so far on a
line of its own and flushes, so the test knows what must survive a SIGKILL.
"""

from __future__ import annotations

import sys

import tier0

BATCH_ROWS = 200


def main() -> None:
    data, meta, path = sys.argv[1:4]
    with tier0.open(data, meta=meta) as t0:
        table = t0.table(path)
        acknowledged = table.count()
        for batch in range(acknowledged // BATCH_ROWS, 1_000_000):
            first = batch * BATCH_ROWS
            ids = list(range(first, first + BATCH_ROWS))
            table.insert({"id": ids, "text": [f"row {i}" for i in ids]})
            acknowledged += BATCH_ROWS
            print(acknowledged, flush=True)


if __name__ == "__main__":
    main()
