"""Another tier0 process on the same store: ``python -m tests.meta.sharing_worker DATA META BUCKET PREFIX COUNT``.

Waits for a line on stdin, then puts COUNT objects and prints one JSON line
per acknowledged put (key, etag, seq).
"""

from __future__ import annotations

import json
import sys

import tier0


def main() -> None:
    data, meta, bucket, prefix, count = sys.argv[1:6]
    with tier0.open(data, meta=meta) as t0:
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(int(count)):
            info = t0.put(bucket, f"{prefix}{i}", f"{prefix}{i}".encode() * 1000)
            print(json.dumps({"key": info.key, "etag": info.etag, "seq": info.seq}), flush=True)


if __name__ == "__main__":
    main()
