"""What every benchmark shares: scratch directories, timing, result rows, tables, JSON.

A benchmark module exposes ``run(context) -> Section``. Each figure it reports
is a ``Row``: tier0's value beside a baseline measured in the same run, and
their ratio, oriented so that a ratio above 1 always means tier0 did better
(more throughput, or less time). Targets are shown and marked met or missed;
nothing here asserts a time (benchmarks are not tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

GB: Final = 1e9  # GB/s means 10^9 bytes per second, as in shared/notes/measurements.md
KiB: Final = 1024
MiB: Final = 1024 * 1024

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One figure of tier0 beside the baseline measured in the same run.

    ``ratio`` is tier0 relative to the baseline, oriented so that > 1 means
    tier0 did better: value / baseline for rates, baseline / value for times
    and sizes (``higher_is_better=False``). ``target`` is a readable goal and
    ``met`` whether this run reached it (None: no target).

    With repeated trials, ``value`` and ``baseline_value`` are medians, the
    per-trial figures are kept in ``samples``/``baseline_samples``, and the
    ratio is the median of per-trial ratios (``paired_ratio``): a baseline and
    a tier0 trial that ran back to back saw the same machine, which matters on
    a shared VM whose disk speed drifts by 2-3x within minutes.
    """

    measure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    higher_is_better: bool = True
    target: str = ""
    met: bool | None = None
    note: str = ""
    samples: list[float] | None = None
    baseline_samples: list[float] | None = None
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.higher_is_better:
            return self.value / self.baseline_value if self.baseline_value else float("nan")
        return self.baseline_value / self.value if self.value else float("inf")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = _finite(self.ratio)
        data["ratio_meaning"] = (
            "tier0 / baseline"
            if self.higher_is_better
            else "baseline / tier0 (times faster, or smaller)"
        )
        return data


@dataclass
class Section:
    """What one benchmark module reports: rows, free-form facts, notes, extra tables."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Extra tables: title -> (column names, rows of cells), printed after the main table.
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def add_paired(
        self,
        measure: str,
        samples: list[float],
        unit: str,
        baseline: str,
        baseline_samples: list[float],
        *,
        target_ratio: float | None = None,
        **kwargs: Any,
    ) -> Row:
        """A row from per-trial rates (higher is better), trial i of each run back to back.

        ``baseline_samples`` may be longer than one per trial only if it has a single
        value, which then pairs with every trial.
        """
        pairs = baseline_samples if len(baseline_samples) > 1 else baseline_samples * len(samples)
        ratio = median([value / base for value, base in zip(samples, pairs, strict=True)])
        if target_ratio is not None:
            kwargs.setdefault("target", f"≥ {target_ratio:.2f}x")
            kwargs.setdefault("met", ratio >= target_ratio)
        return self.add(
            measure, median(samples), unit, baseline, median(baseline_samples),
            samples=[round(v, 4) for v in samples],
            baseline_samples=[round(v, 4) for v in baseline_samples],
            paired_ratio=ratio, **kwargs,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": round(self.seconds, 2),
            "rows": [row.to_json() for row in self.rows],
            "facts": self.facts,
            "notes": self.notes,
            "tables": {
                title: {"columns": columns, "rows": rows}
                for title, (columns, rows) in self.tables.items()
            },
        }


def _finite(value: float) -> float | None:
    return None if value != value or value in (float("inf"), float("-inf")) else round(value, 4)


# -- context and scratch space ------------------------------------------------------------------


@dataclass
class Context:
    """The run's options and its scratch root (on a real disk, removed at the end)."""

    quick: bool
    scratch_root: Path
    #: Figures one benchmark measured that a later one may quote (e.g. the put rate).
    shared: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[Path]:
        """A fresh directory for one measurement, deleted afterwards."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch_root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def choose_scratch_parent(requested: str | None) -> Path:
    """The directory scratch space goes under: ``requested``, ``$T0_BENCH_DIR`` or the temp dir.

    Refuses a tmpfs (RAM) location unless asked for explicitly: fsync there
    costs nothing and every durable-write figure would be meaningless.
    """
    parent = Path(requested or os.environ.get("T0_BENCH_DIR") or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    fs = filesystem_of(parent)
    if fs.get("type") in ("tmpfs", "ramfs") and requested is None:
        raise SystemExit(
            f"{parent} is on {fs['type']}: durability figures would be meaningless. "
            "Pass --tmp DIR on a disk (or set T0_BENCH_DIR)."
        )
    return parent


def filesystem_of(path: Path) -> dict[str, Any]:
    """Mount point, device, type and free space of the filesystem holding ``path``."""
    path = path.resolve()
    best: tuple[str, str, str, str] | None = None
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            device, mount_point, fstype, options, *_ = line.split()
            mount_point = mount_point.replace("\\040", " ")
            inside = str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")
            if inside and (best is None or len(mount_point) >= len(best[1])):
                best = (device, mount_point, fstype, options)
    usage = shutil.disk_usage(path)
    info: dict[str, Any] = {"path": str(path), "free_gb": round(usage.free / GB, 1)}
    if best is not None:
        info.update(device=best[0], mount_point=best[1], type=best[2], options=best[3])
    return info


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (st_blocks, like ``du``)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total


def drop_page_cache(path: Path) -> None:
    """Evict ``path`` (a file, or every file below a directory) from the page cache.

    posix_fadvise(DONTNEED) drops clean pages without needing root. The host of
    a VM may still cache the blocks, so "cold" here means cold in this kernel.
    """
    paths = (
        [path] if path.is_file() else [Path(d, n) for d, _, files in os.walk(path) for n in files]
    )
    for file in paths:
        with contextlib.suppress(OSError):
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# -- timing --------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call, on the monotonic high-resolution clock."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return statistics.median(values)


def trials(quick: bool, full: int = 3) -> int:
    """How many times to repeat a measurement: ``full`` normally, once with --quick."""
    return 1 if quick else full


# -- the machine ---------------------------------------------------------------------------


def machine_facts(scratch_parent: Path) -> dict[str, Any]:
    import tier0

    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) * 1024 / GB, 1)
                break
    catalog = sys.modules.get("tier0.catalog")
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "memory_gb": memory_gb,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "tier0": getattr(tier0, "__version__", "?"),
        "tier0_catalog": "real" if getattr(catalog, "__file__", None) else "STUB (T0_STUB_CATALOG)",
        "git_commit": _git_commit(),
        "scratch_dir": filesystem_of(scratch_parent),
    }


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+dirty src" if dirty else "")


# -- printing ------------------------------------------------------------------------------


def fmt(value: Any, unit: str = "") -> str:
    """A number for a table: 3 significant digits, thousands separators past 1,000."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float) and value != value:
        text = "n/a"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 0.01 or value == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.2g}"
    return f"{text} {unit}".rstrip()


def fmt_ratio(ratio: float) -> str:
    if ratio != ratio:
        return "n/a"
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


class Printer:
    """Tables through rich when it is installed (it is a tier0 dependency), plain text otherwise."""

    def __init__(self) -> None:
        try:
            from rich.console import Console

            self._console: Any = Console(
                width=max(140, shutil.get_terminal_size((140, 40)).columns)
            )
        except ImportError:
            self._console = None

    def line(self, text: str = "") -> None:
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            print(text)
        sys.stdout.flush()

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        if self._console is not None:
            from rich.table import Table

            table = Table(title=title, title_justify="left", show_lines=False)
            for index, column in enumerate(columns):
                table.add_column(column, justify="left" if index == 0 else "right", overflow="fold")
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
        else:
            widths = [
                max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                for i, c in enumerate(columns)
            ]
            print(title)
            print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
            print("  ".join("-" * w for w in widths))
            for row in rows:
                print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        sys.stdout.flush()

    def section(self, section: Section) -> None:
        columns = ["measure", "tier0", "baseline (same run)", "baseline", "ratio", "target", "met"]
        rows = [
            [
                row.measure + (f" [{row.note}]" if row.note else ""),
                fmt(row.value, row.unit),
                row.baseline,
                fmt(row.baseline_value, row.unit),
                fmt_ratio(row.ratio),
                row.target or "—",
                {None: "", True: "yes", False: "NO"}[row.met],
            ]
            for row in section.rows
        ]
        self.line()
        self.table(f"{section.title}  ({section.seconds:.0f} s)", columns, rows)
        for title, (columns, cells) in section.tables.items():
            self.table(title, columns, [[fmt(c) for c in r] for r in cells])
        for key, value in section.facts.items():
            self.line(
                f"  {key}: {fmt(value) if not isinstance(value, (dict, list)) else json.dumps(value)}"
            )
        for note in section.notes:
            self.line(f"  note: {note}")


# -- JSON ----------------------------------------------------------------------------------


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(temporary, path)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# -- tier0 ---------------------------------------------------------------------------------


def open_store(path: Path, **config: Any) -> Any:
    """``tier0.open(path)`` with ``StoreConfig(**config)`` (defaults where not given)."""
    import tier0
    from tier0.store import StoreConfig

    return tier0.open(path, config=StoreConfig(**config))


BUCKET: Final = "bench"


def store_sanity(context: Context) -> str | None:
    """None if a chunked put reads back intact and ``check()`` is clean, else what went wrong.

    Run before anything is timed: a write path that skipped its chunk writes
    would post wonderful figures.
    """
    with context.scratch("sanity") as directory, open_store(directory) as t0:
        t0.create_bucket(BUCKET)
        data = os.urandom(3 * MiB)
        info = t0.put(BUCKET, "sanity", data)
        problems = []
        if info.stored_bytes < len(data):
            problems.append(
                f"put reports {info.stored_bytes} stored bytes for {len(data)} random bytes"
            )
        report = t0.check()
        problems += report.problems[:3]
        try:
            if t0.get_bytes(BUCKET, "sanity") != data:
                problems.append("get returned different bytes")
        except Exception as error:
            problems.append(f"get failed: {type(error).__name__}: {error}")
    return "; ".join(problems) or None
