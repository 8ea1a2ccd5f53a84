"""Run tier0's benchmarks: print a table per benchmark and write the figures as JSON.

    python benchmarks/run.py                 # everything (~10 min on 2 cores)
    python benchmarks/run.py --quick         # smaller sizes, one trial (~1 min)
    python benchmarks/run.py --only small,inline --out /tmp/x.json

Every figure is shown beside a baseline measured in the same run, with their
ratio (> 1 means tier0 did better). A full run writes
benchmarks/results/latest.json (the committed figures); --quick and --only
runs write benchmarks/results/quick.json or only-<names>.json instead, which
git ignores, unless --out says otherwise. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS_DIR,
    Context,
    Printer,
    Section,
    choose_scratch_parent,
    fmt,
    machine_facts,
    now_iso,
    store_sanity,
    write_json,
)

#: name -> module, in the order they run.
BENCHMARKS = {
    "ingest": "bench_ingest",
    "small": "bench_small",
    "inline": "bench_inline",
    "catalog": "bench_catalog",
    "s3": "bench_s3",
    "db": "bench_db",
    "analytics": "bench_analytics",
    "searchable": "bench_searchable",
    "engine": "bench_engine",
    "streams": "bench_streams",
    "vectors": "bench_vectors",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and one trial (about a minute)"
    )
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--out", type=Path, help="JSON output path (default: see above)")
    parser.add_argument(
        "--tmp",
        help="scratch directory parent, on the disk to measure (default: $T0_BENCH_DIR or the temp dir)",
    )
    args = parser.parse_args(argv)

    names = list(BENCHMARKS)
    if args.only:
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in names if name not in BENCHMARKS]
        if unknown:
            parser.error(
                f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
            )
    out = args.out or _default_out(quick=args.quick, only=args.only and names)

    try:
        import tier0  # noqa: F401 - fail early, with a hint, if the package does not import
    except ImportError as error:
        print(f"cannot import tier0: {error}", file=sys.stderr)
        print("install it first: pip install -e .", file=sys.stderr)
        return 2

    printer = Printer()
    parent = choose_scratch_parent(args.tmp)
    scratch_root = Path(tempfile.mkdtemp(prefix="tier0-bench-", dir=parent))
    context = Context(quick=args.quick, scratch_root=scratch_root)
    started = time.perf_counter()
    document: dict[str, Any] = {
        "started": now_iso(),
        "mode": "quick" if args.quick else "full",
        "benchmarks": names,
        "machine": machine_facts(parent),
        "sections": {},
    }
    try:
        _print_header(printer, document)
        problem = store_sanity(context)
        document["store_sanity"] = problem or "ok"
        if problem:
            printer.line(f"!! the store failed its sanity check: {problem}")
            printer.line("!! tier0 figures below do not describe a working store")
        for name in names:
            section = _run_one(context, name, printer)
            document["sections"][name] = section.to_json()
            printer.section(section)
            document["seconds"] = round(time.perf_counter() - started, 1)
            write_json(out, document)  # after each section: a crash keeps what was measured
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    printer.line()
    printer.line(f"total {time.perf_counter() - started:.0f} s; figures written to {out}")
    return 0


def _default_out(*, quick: bool, only: list[str] | None) -> Path:
    if only:
        return RESULTS_DIR / f"only-{'-'.join(only)}{'-quick' if quick else ''}.json"
    return RESULTS_DIR / ("quick.json" if quick else "latest.json")


def _run_one(context: Context, name: str, printer: Printer) -> Section:
    printer.line(f"… {name}")
    module = importlib.import_module(BENCHMARKS[name])
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        section: Section = module.run(context)
    except Exception:
        # One broken benchmark should not cost the others' figures.
        section = Section(name, f"{name}: FAILED")
        section.notes.append(traceback.format_exc())
    section.seconds = time.perf_counter() - started
    # The machine may be shared: the load says how much to trust this section's figures.
    section.facts["load average (1 min) before / after"] = (
        f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
    )
    return section


def _print_header(printer: Printer, document: dict[str, Any]) -> None:
    machine = document["machine"]
    scratch = machine["scratch_dir"]
    printer.line(f"tier0 benchmarks, {document['mode']} run, {document['started']}")
    printer.line(
        f"  {machine['cpu_count']} CPUs ({machine['cpus_usable']} usable, {machine['cpu_model']}), "
        f"{fmt(machine['memory_gb'])} GB RAM, load {machine['load_average_1m']}, kernel {machine['kernel']}"
    )
    printer.line(
        f"  Python {machine['python']}, SQLite {machine['sqlite']}, tier0 {machine['tier0']} "
        f"({machine['git_commit']}), catalog module: {machine['tier0_catalog']}"
    )
    printer.line(
        f"  scratch: {scratch['path']} on {scratch.get('device', '?')} ({scratch.get('type', '?')}, "
        f"mounted at {scratch.get('mount_point', '?')}), {scratch['free_gb']} GB free"
    )
    printer.line("  ratio: tier0 relative to the baseline; > 1 means tier0 did better")


if __name__ == "__main__":
    sys.exit(main())
