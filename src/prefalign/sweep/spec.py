"""The sweep file: read it, check it, expand it into jobs.

Keys (docs/sweep.md has an example of each)::

    name: quick                   # default: the file's stem
    output_dir: runs/sweeps       # the sweep lives in output_dir/name
    base: {stage: dpo, config: configs/dpo-arithmetic.yaml, overrides: {...}}
    shared:                       # runs computed once, before the cells
      sft: {stage: sft, config: configs/sft.yaml, overrides: [...]}
    cells:                        # one of:
      grid: {loss.name: [dpo, ipo], loss.beta: [0.1, 0.5]}   # cartesian product
      list: [{loss.name: dpo}, {label: kto, stage: kto, config: configs/kto-hh.yaml}]
    seeds: [0, 1, 2]              # sets train.seed; one run per seed
    metrics: [rewards/accuracy, {key: rewards/margin, label: margin}]

``overrides`` is a mapping of dotted keys to values or a list of ``key=value``
strings; a cell's keys are overrides too, except ``stage`` and ``config``, which
replace the base's, and a list cell's ``label``, which names it (its id and its
value in the table). ``${shared.NAME}`` in any override value is the ``final/``
model of that shared run (a shared run may refer to those declared before it).
Config paths are relative to the working directory, as on the command line.

Every problem (an unknown key, an unknown stage, a grid value that is not a list,
a missing config file, an unknown reference, a cell whose stage config does not
load) is a ``ConfigError`` naming the sweep file and the key, raised before any
job runs.

A cell's id joins its swept keys, values and seed (``loss.name-dpo_loss.beta-0.1_s0``): stable
when the grid is reordered or extended, so finished cells keep their directories.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prefalign.config.base import yaml_error_text
from prefalign.errors import ConfigError
from prefalign.sweep.stages import check_stage_config, stage_names

TOP_KEYS = ("name", "output_dir", "base", "shared", "cells", "seeds", "metrics")
JOB_KEYS = ("stage", "config", "overrides")
SET_BY_SWEEP = ("name", "output_dir")
SEED_KEY = "train.seed"
LABEL_KEY = "label"
SHARED_DIR, CELLS_DIR = "shared", "cells"
REFERENCE = re.compile(r"\$\{([^}]*)\}")
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Metric:
    """A metric of the table: a key of ``eval.json`` (or of ``metrics.jsonl``), its label,
    and the range its values can take (a rate's is ``(0, 1)``): intervals are clipped
    to it, as a t-interval of a few seeds' rates can reach past 0 or 1."""

    key: str
    label: str
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class Job:
    """One stage run: a shared run (``index`` is None) or a cell of the matrix.

    ``overrides``: ``(key, value)`` as the command line takes them, references
    resolved; ``values``: the swept values as written in the sweep file; ``needs``:
    the shared runs it refers to."""

    id: str
    stage: str
    config: str | None
    overrides: tuple[tuple[str, str], ...]
    values: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    index: int | None = None
    needs: tuple[str, ...] = ()

    @property
    def is_shared(self) -> bool:
        return self.index is None


@dataclass
class Sweep:
    """A checked sweep file: where it lives and its jobs."""

    path: Path
    name: str
    root: Path
    shared: list[Job]
    cells: list[Job]
    parameters: list[str]
    seeds: list[int] | None
    metrics: list[Metric]

    def job_dir(self, job: Job) -> Path:
        """The job's run directory: ``root/shared/<name>`` or ``root/cells/<id>``."""
        return self.root / (SHARED_DIR if job.is_shared else CELLS_DIR) / job.id


class _Reader:
    """Checks of one sweep file; every error names the file and the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def mapping(self, key: str, raw: Any, allowed: tuple[str, ...] | None = None) -> dict:
        if not isinstance(raw, dict):
            raise self.fail(key, f"expected a mapping, got {raw!r}")
        for name in raw:
            if not isinstance(name, str):
                raise self.fail(key, f"keys must be text, got {name!r}")
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(allowed)}"
                raise self.fail(f"{key}.{name}" if key else name, f"unknown key; {hint}")
        return raw

    def stage(self, key: str, raw: Any) -> str:
        names = stage_names()
        if raw not in names:
            raise self.fail(key, f"unknown stage {raw!r}; stages: {', '.join(names)}")
        return raw

    def config(self, key: str, raw: Any) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str) or not Path(raw).is_file():
            raise self.fail(key, f"config file not found: {raw}")
        return raw

    def override_key(self, key: str, name: str, seeded: bool) -> None:
        if name in SET_BY_SWEEP:
            raise self.fail(key, f"'{name}' is set by the sweep (each run is "
                            f"output_dir/<sweep name>/cells/<cell id>)")
        if seeded and name == SEED_KEY:
            raise self.fail(key, f"{SEED_KEY} is set by seeds:; remove one of them")

    def overrides(self, key: str, raw: Any, seeded: bool) -> dict[str, str]:
        """``raw`` (a mapping or a list of ``key=value``) as command-line values."""
        if raw is None:
            return {}
        if isinstance(raw, list):
            pairs = {}
            for index, item in enumerate(raw):
                if not isinstance(item, str) or "=" not in item or item.startswith("="):
                    raise self.fail(f"{key}[{index}]", f"expected key=value, got {item!r}")
                name, value = item.split("=", 1)
                pairs[name] = value
            raw = pairs
        self.mapping(key, raw)
        for name in raw:
            self.override_key(f"{key}.{name}", name, seeded)
        return {name: command_value(value) for name, value in raw.items()}

    def job(self, key: str, raw: Any, seeded: bool) -> tuple[str, str | None, dict[str, str]]:
        raw = self.mapping(key, raw, JOB_KEYS)
        if "stage" not in raw:
            raise self.fail(key, "missing 'stage'")
        return (self.stage(f"{key}.stage", raw["stage"]),
                self.config(f"{key}.config", raw.get("config")),
                self.overrides(f"{key}.overrides", raw.get("overrides"), seeded))


def command_value(value: Any) -> str:
    """A value as ``key=value`` takes it: text as it is, anything else as JSON (YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def _resolve(reader: _Reader, key: str, text: str, known: dict[str, str],
             needs: set[str]) -> str:
    """``text`` with each ``${shared.NAME}`` replaced by that run's model path."""
    def replace(match: re.Match) -> str:
        name = match.group(1).removeprefix("shared.")
        if not match.group(1).startswith("shared.") or name not in known:
            declared = ", ".join(known) or "none declared before this point"
            raise reader.fail(key, f"unknown reference ${{{match.group(1)}}} (shared runs: "
                              f"{declared})")
        needs.add(name)
        return known[name]

    return REFERENCE.sub(replace, text)


def _variants(reader: _Reader, raw: Any) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Where the cells come from (``cells.grid`` or ``cells.list``), each cell's swept
    values as written, and the swept keys in order."""
    if raw is None:
        return "base", [{}], []
    cells = reader.mapping("cells", raw, ("grid", "list"))
    if len(cells) != 1:
        raise reader.fail("cells", "give either grid: or list:, not both")
    if "grid" in cells:
        grid = reader.mapping("cells.grid", cells["grid"])
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                raise reader.fail(f"cells.grid.{name}", f"expected a non-empty list of "
                                  f"values, got {values!r}")
        keys = list(grid)
        return "cells.grid", [dict(zip(keys, combo))
                              for combo in itertools.product(*grid.values())], keys
    entries = cells["list"]
    if not isinstance(entries, list) or not entries:
        raise reader.fail("cells.list", f"expected a non-empty list of mappings, got "
                          f"{entries!r}")
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        reader.mapping(f"cells.list[{index}]", entry)
        label = entry.get(LABEL_KEY)
        if label is not None and not (isinstance(label, str) and PLAIN_NAME.fullmatch(label)):
            raise reader.fail(f"cells.list[{index}].{LABEL_KEY}", f"expected letters, digits, "
                              f"'.', '_', '-', got {label!r}")
        text = json.dumps(entry, sort_keys=True)
        if text in seen:
            raise reader.fail(f"cells.list[{index}]", f"repeats cells.list[{seen[text]}]")
        seen[text] = index
    keys = list(dict.fromkeys(name for entry in entries for name in entry))
    return "cells.list", entries, keys


def _slug(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9.+-]+", "-", command_value(value)).strip("-")
    return text[:40] or "x"


def cell_ids(values: list[dict[str, Any]], seeds: list[int | None]) -> list[str]:
    """Distinct, stable ids: ``<key>-<value>_..._s<seed>``, with a short hash of the
    values where two cells would still collide (values that differ in punctuation)."""
    ids = []
    for entry, seed in zip(values, seeds):
        parts = ([_slug(entry[LABEL_KEY])] if LABEL_KEY in entry else
                 [f"{_slug(name)}-{_slug(value)}" for name, value in entry.items()] or ["base"])
        ids.append("_".join(parts + ([f"s{seed}"] if seed is not None else [])))
    for index, cell_id in enumerate(ids):
        if ids.count(cell_id) > 1:
            digest = json.dumps([values[index], seeds[index]], sort_keys=True)
            ids[index] = f"{cell_id}-{hashlib.sha1(digest.encode()).hexdigest()[:6]}"
    return ids


def _metrics(reader: _Reader, raw: Any) -> list[Metric]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise reader.fail("metrics", f"expected a list of keys, got {raw!r}")
    metrics = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            metrics.append(Metric(item, item))
            continue
        item = reader.mapping(f"metrics[{index}]", item, ("key", "label", "range"))
        if not isinstance(item.get("key"), str):
            raise reader.fail(f"metrics[{index}].key", "expected the metric's key as text")
        metrics.append(Metric(item["key"], str(item.get("label") or item["key"]),
                              _bounds(reader, f"metrics[{index}].range", item.get("range"))))
    return metrics


def _bounds(reader: _Reader, where: str, raw: Any) -> tuple[float, float] | None:
    if raw is None:
        return None
    if (not isinstance(raw, list) or len(raw) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
            or raw[0] >= raw[1]):
        raise reader.fail(where, f"expected [low, high] with low < high, got {raw!r}")
    return float(raw[0]), float(raw[1])


def _seeds(reader: _Reader, raw: Any) -> list[int] | None:
    if raw is None:
        return None
    if (not isinstance(raw, list) or not raw
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw)):
        raise reader.fail("seeds", f"expected a non-empty list of integers, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise reader.fail("seeds", f"repeated seed in {raw}")
    return raw


def _checked(reader: _Reader, where: str, job: Job) -> Job:
    """``job`` once its stage config loads; otherwise a ConfigError naming ``where``."""
    try:
        check_stage_config(job.stage, job.config, [f"{k}={v}" for k, v in job.overrides])
    except ConfigError as error:
        label = where if job.is_shared else f"{where} (cell {job.index} {job.id})"
        raise reader.fail(label, str(error)) from None
    return job


def _shared_jobs(reader: _Reader, raw: Any, root: Path) -> tuple[list[Job], dict[str, str]]:
    jobs, known = [], {}
    for name, entry in reader.mapping("shared", raw or {}).items():
        key = f"shared.{name}"
        if not PLAIN_NAME.fullmatch(name):
            raise reader.fail(key, "a shared run's name is letters, digits, '.', '_', '-'")
        stage, config, overrides = reader.job(key, entry, seeded=False)
        needs: set[str] = set()
        resolved = tuple((k, _resolve(reader, f"{key}.overrides.{k}", v, known, needs))
                         for k, v in overrides.items())
        jobs.append(_checked(reader, key, Job(name, stage, config, resolved,
                                              needs=tuple(sorted(needs)))))
        known[name] = str(root / SHARED_DIR / name / "final")
    return jobs, known


def load_sweep(path: str | Path) -> Sweep:
    """Read and check the sweep file at ``path``; every job's config is loaded once."""
    path = Path(path)
    reader = _Reader(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}{yaml_error_text(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping (name, base, cells, ...)")
    raw = reader.mapping("", raw, TOP_KEYS)
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise reader.fail("name", f"expected letters, digits, '.', '_', '-', got {name!r}")
    output_dir = raw.get("output_dir", "runs/sweeps")
    if not isinstance(output_dir, str) or not output_dir:
        raise reader.fail("output_dir", f"expected a folder, got {output_dir!r}")
    root = Path(output_dir) / name
    seeds = _seeds(reader, raw.get("seeds"))
    if "base" not in raw:
        raise reader.fail("base", "missing: the stage run the cells vary, "
                          "{stage, config, overrides}")
    shared, known = _shared_jobs(reader, raw.get("shared"), root)
    stage, config, base = reader.job("base", raw["base"], seeded=seeds is not None)
    needs: set[str] = set()
    base = {k: _resolve(reader, f"base.overrides.{k}", v, known, needs) for k, v in base.items()}
    where, variants, parameters = _variants(reader, raw.get("cells"))
    points = [(values, seed) for values in variants for seed in (seeds or [None])]
    ids = cell_ids([values for values, _ in points], [seed for _, seed in points])
    cells = []
    for index, ((values, seed), cell_id) in enumerate(zip(points, ids)):
        key = where if where != "cells.list" else f"cells.list[{variants.index(values)}]"
        cell_needs = set(needs)
        overrides = dict(base)
        for swept, value in values.items():
            if swept in ("stage", "config", LABEL_KEY):
                continue
            reader.override_key(f"{key}.{swept}", swept, seeded=seeds is not None)
            overrides[swept] = _resolve(reader, f"{key}.{swept}", command_value(value), known,
                                        cell_needs)
        if seed is not None:
            overrides[SEED_KEY] = str(seed)
        job = Job(cell_id,
                  reader.stage(f"{key}.stage", values["stage"]) if "stage" in values else stage,
                  reader.config(f"{key}.config", values["config"]) if "config" in values
                  else config,
                  tuple(overrides.items()), dict(values), seed, index, tuple(sorted(cell_needs)))
        cells.append(_checked(reader, key, job))
    return Sweep(path, name, root, shared, cells, parameters, seeds,
                 _metrics(reader, raw.get("metrics")))
