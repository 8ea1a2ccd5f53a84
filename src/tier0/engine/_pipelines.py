"""Pipelines: functions and triggers declared together, deployed and torn down as a unit.

A pipeline is one definition (YAML, or the same as a Python dict)::

    name: ingest
    package: ./fns                 # the code of the functions whose module is in it
                                   # (over HTTP: package_b64, the directory zipped)
    functions:
      extract: {handler: "steps:extract", grants: [["s3:*", "/docs/*"]]}
      embed:   {handler: "steps:embed", concurrency: 1, memory_mb: 2048}
    triggers:
      new-raw:   {function: extract, bucket: docs, prefix: raw/, suffix: .pdf}
      new-text:  {function: embed, bucket: docs, prefix: text/}

Names are the pipeline's own: its functions and triggers are deployed as
``<pipeline>.<name>`` (so two pipelines never collide), and a trigger's
``function`` names one of the pipeline's functions, or any deployed function
by its full name. A function's fields are `FunctionSpec`'s, a trigger's are
`TriggerSpec`'s. Functions whose handler module is in ``package`` (a
directory, relative to the YAML file) are deployed with it as their code;
others by import path (the built-ins, say).

Steps chain through the data they write: ``extract`` writes ``text/...``,
which is an event, which runs ``embed``; each step is visible in the
catalog and the event log. Deploying again replaces the pipeline: its
functions get a new version, its triggers are changed in place to the new
definition, pinned to the new versions, keeping their place in the event log
(so nothing written meanwhile is missed); those gone from the definition go.
`status` shows each trigger with its invocations by status and the last
error.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tier0.engine._dispatch import Triggers
from tier0.engine._functions import Functions, FunctionSpec, zip_directory
from tier0.engine._triggers import TriggerSpec
from tier0.errors import InvalidArgument, NoSuchFunction, NoSuchPipeline, NoSuchTrigger
from tier0.meta import Committer, MetaBackend, WriteTx, dump_json, load_json

STEPS_MAX: Final = 100
_TOP_FIELDS: Final = frozenset(
    {"name", "package", "package_b64", "functions", "triggers", "description"}
)


@dataclass(frozen=True)
class Pipeline:
    """A parsed, checked definition: full names, specs, and which functions take the package."""

    name: str
    functions: tuple[FunctionSpec, ...]
    triggers: tuple[TriggerSpec, ...]
    #: The code package (a zip), for the functions named in ``packaged``.
    package: bytes | None
    packaged: frozenset[str]
    document: dict[str, Any]

    @classmethod
    def parse(cls, document: Mapping[str, Any], *, base: Path | None = None) -> Pipeline:
        """Check ``document`` whole (nothing is deployed from a definition with an error);
        ``base`` is where a relative ``package`` is found."""
        if not isinstance(document, Mapping):
            raise InvalidArgument("a pipeline definition is a mapping (name, functions, triggers)")
        unknown = set(document) - _TOP_FIELDS
        if unknown:
            raise InvalidArgument(
                f"unknown field(s) {', '.join(sorted(unknown))} in the pipeline; the fields are"
                f" {', '.join(sorted(_TOP_FIELDS))}"
            )
        name = document.get("name")
        FunctionSpec(str(name), "m:f")  # the same rules as a function's name
        functions_doc = _mapping(document, "functions")
        triggers_doc = _mapping(document, "triggers")
        if not triggers_doc or len(functions_doc) + len(triggers_doc) > STEPS_MAX:
            raise InvalidArgument(
                f"a pipeline has at least one trigger and at most {STEPS_MAX} steps"
            )
        package: bytes | None
        if document.get("package_b64") is not None:
            if document.get("package") is not None:
                raise InvalidArgument("give package (a directory) or package_b64, not both")
            package, modules = _zipped(document["package_b64"])
        else:
            package, modules = _package(document.get("package"), base)
        functions, packaged = [], set()
        for local, fields in functions_doc.items():
            spec = _build(FunctionSpec, f"{name}.{local}", fields, "function", local)
            functions.append(spec)
            if spec.module.split(".")[0] in modules:
                packaged.add(spec.name)
        own = {f.name for f in functions}
        triggers = []
        for local, fields in triggers_doc.items():
            fields = dict(fields) if isinstance(fields, Mapping) else fields
            if isinstance(fields, dict) and isinstance(fields.get("function"), str):
                target = fields["function"]
                if f"{name}.{target}" in own:
                    fields["function"] = f"{name}.{target}"
            triggers.append(_build(TriggerSpec, f"{name}.{local}", fields, "trigger", local))
        stored = {k: v for k, v in document.items() if k != "package_b64"}
        return cls(
            str(name), tuple(functions), tuple(triggers), package, frozenset(packaged), stored
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Pipeline:
        """Parse the YAML file at ``path`` (its package relative to its directory)."""
        import yaml  # type: ignore[import-untyped]

        file = Path(path)
        try:
            document = yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            raise InvalidArgument(f"{file} is not YAML: {error}") from None
        return cls.parse(document, base=file.parent)


@dataclass(frozen=True)
class StepStatus:
    trigger: str
    function: str
    function_version: int | None
    state: str
    counts: dict[str, int]
    last_error: str | None


class Pipelines:
    """Deploy, list, inspect and tear down pipelines."""

    def __init__(self, meta: MetaBackend, committer: Committer) -> None:
        self._meta = meta
        self._committer = committer
        self._functions = Functions(meta, committer)
        self._triggers = Triggers(meta, committer)

    def deploy(self, pipeline: Pipeline, *, deploy_function: Any, add_trigger: Any,
               update_trigger: Any, deployed_by: str) -> None:  # fmt: skip
        """Deploy (or replace) ``pipeline``: its functions through ``deploy_function(spec,
        package=...)``, its triggers through ``add_trigger(spec)`` or, for those it had,
        ``update_trigger(spec)`` (the caller's, which check rights and make principals).
        A trigger kept keeps its place in the event log: nothing between the two
        definitions is missed."""
        before = self._steps(pipeline.name)
        for spec in pipeline.functions:
            package = pipeline.package if spec.name in pipeline.packaged else None
            deploy_function(spec, package=package)
        keep = {t.name for t in pipeline.triggers} & set(before["triggers"])
        self._drop(sorted(set(before["triggers"]) - keep), [])
        for trigger in pipeline.triggers:
            (update_trigger if trigger.name in keep else add_trigger)(trigger)
        self._drop([], sorted(set(before["functions"]) - {f.name for f in pipeline.functions}))
        record = {
            "definition": pipeline.document,
            "functions": [f.name for f in pipeline.functions],
            "triggers": [t.name for t in pipeline.triggers],
        }

        def op(tx: WriteTx) -> None:
            tx.execute(
                "INSERT INTO t0_pipelines (name, definition, created_us, created_by)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " definition = excluded.definition, created_us = excluded.created_us,"
                " created_by = excluded.created_by",
                (pipeline.name, dump_json(record), tx.now_us, deployed_by),
            )

        self._committer.run(op)

    def names(self) -> list[str]:
        with self._meta.reader() as db:
            return [row[0] for row in db.query_all("SELECT name FROM t0_pipelines ORDER BY name")]

    def status(self, name: str) -> list[StepStatus]:
        """Each trigger of ``name``: its function, state, invocations by status, last error."""
        steps = self._steps(name, missing_ok=False)
        found = []
        for trigger_name in steps["triggers"]:
            try:
                trigger = self._triggers.get(trigger_name)
            except NoSuchTrigger:
                continue
            with self._meta.reader() as db:
                counts = {
                    row[0]: int(row[1])
                    for row in db.query_all(
                        "SELECT status, count(*) FROM t0_invocations WHERE trigger_name = ?"
                        " GROUP BY status",
                        (trigger_name,),
                    )
                }
                error = db.query_one(
                    "SELECT error FROM t0_invocations WHERE trigger_name = ? AND error IS NOT NULL"
                    " ORDER BY id DESC LIMIT 1",
                    (trigger_name,),
                )
            found.append(StepStatus(
                trigger_name, trigger.spec.function, trigger.spec.function_version, trigger.state,
                counts, error[0] if error else None,
            ))  # fmt: skip
        return found

    def remove(self, name: str) -> None:
        """Tear ``name`` down: its triggers, then its functions, then its record."""
        steps = self._steps(name, missing_ok=False)
        self._drop(steps["triggers"], steps["functions"])
        self._committer.run(
            lambda tx: tx.execute("DELETE FROM t0_pipelines WHERE name = ?", (name,))
        )

    def _drop(self, triggers: list[str], functions: list[str]) -> None:
        """Remove these triggers, then these functions (each may be gone already)."""
        for trigger in triggers:
            with contextlib.suppress(NoSuchTrigger):
                self._triggers.remove(trigger)
        for function in functions:
            with contextlib.suppress(NoSuchFunction):
                self._functions.remove(function)

    def _steps(self, name: str, *, missing_ok: bool = True) -> dict[str, list[str]]:
        with self._meta.reader() as db:
            row = db.query_one("SELECT definition FROM t0_pipelines WHERE name = ?", (name,))
        if row is None:
            if missing_ok:
                return {"functions": [], "triggers": []}
            raise NoSuchPipeline(f"there is no pipeline named {name!r}")
        record = load_json(row[0])
        return {"functions": list(record["functions"]), "triggers": list(record["triggers"])}


def _mapping(document: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = document.get(field) or {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{field} is a mapping of names to their fields")
    return value


def _build(kind: type, full: str, fields: Any, what: str, local: str) -> Any:
    if not isinstance(fields, Mapping):
        raise InvalidArgument(f"{what} {local!r} is a mapping of its fields")
    if "name" in fields:
        raise InvalidArgument(f"{what} {local!r}: its name is its key, not a field")
    values = dict(fields)
    for key in ("events", "secrets"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    if isinstance(values.get("grants"), list):
        values["grants"] = tuple(tuple(g) if isinstance(g, list) else g for g in values["grants"])
    try:
        return kind(name=full, **values)
    except TypeError as error:
        raise InvalidArgument(f"{what} {local!r}: {error}") from None
    except InvalidArgument as error:
        raise InvalidArgument(f"{what} {local!r}: {error}") from None


def _zipped(value: Any) -> tuple[bytes, set[str]]:
    """A package sent as base64 (over HTTP), and the top-level modules it holds."""
    try:
        package = base64.b64decode(value, validate=True)
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            names = archive.namelist()
    except (binascii.Error, TypeError, ValueError, zipfile.BadZipFile):
        raise InvalidArgument("package_b64 is a zip in base64") from None
    modules = {
        n.split("/")[0].removesuffix(".py")
        for n in names
        if n.endswith(".py") and (n.count("/") == 0 or n.endswith("/__init__.py"))
    }
    return package, {m for m in modules if m}


def _package(value: Any, base: Path | None) -> tuple[bytes | None, set[str]]:
    """The zipped package and the top-level modules it holds."""
    if value is None:
        return None, set()
    if not isinstance(value, str):
        raise InvalidArgument("package is a directory path")
    directory = Path(value)
    if not directory.is_absolute() and base is not None:
        directory = base / directory
    if not directory.is_dir():
        raise InvalidArgument(f"the pipeline's package {directory} is not a directory")
    modules = {
        p.stem if p.is_file() else p.name
        for p in directory.iterdir()
        if (p.is_file() and p.suffix == ".py") or (p / "__init__.py").is_file()
    }
    return zip_directory(str(directory)), modules
