"""`irlb sweep`: one experiment over a grid of config values × seeds, as Ray Tune trials, resumable.

A sweep (a JSON file and/or command-line options, see :class:`SweepSpec`) names an experiment of
:data:`irlb.registry.EXPERIMENTS`, a base scale, fixed overrides, a grid ``{dotted key: [values]}`` and seeds.
Every trial (one grid point × one seed) runs the experiment's ``run(scale, trial_dir, seed=..., config=...)``
into its own folder ``<sweep_dir>/<trial_id>/``; the trial id is the experiment name, a hash of the trial's
full config, scale and seed, and the seed, so the same trial always lands in the same folder. A trial folder
holds

* ``trial.json``: experiment, scale, grid point, seed, the full config, provenance (versions, commit, machine),
  the attempt number and the node it runs on (:func:`node_record`), written when the attempt starts;
* the experiment's result file ``<experiment>.json`` (per-step metrics, summary, provenance of the experiment);
* ``error.json``: the traceback of the last failed attempt, if any;
* ``done.json``: the completion marker (seconds, key metric, attempt, node), written atomically after the result
  file.

``extra_metrics`` (dotted paths, e.g. a reward-quality number beside the return) are read from each finished
trial's result file when the sweep is summarized, so adding one to a finished sweep needs no rerun (a trial whose
result lacks the path reports None for it).

**Resume**: a trial whose ``done.json`` exists is skipped, so re-running an interrupted or partly failed
sweep runs only the missing trials (a half-finished trial has no marker and runs again from scratch); Tune's
own experiment-restore is not used. Failed attempts are retried ``max_failures`` times (Tune's
``FailureConfig``). At the end: a table (trial, status, seconds, metric) and ``sweep.json`` with every trial
and, per grid point, the IQM of the metric over seeds with a 95% bootstrap CI
(:func:`irl_bilevel.statistics.iqm_with_ci`).

**Adding seeds** to a sweep whose trial folders are gone: run the new seeds alone (``--seeds 3,4``), then
:func:`merge_sweeps` (``irlb merge-sweeps OLD.json NEW.json --out ALL.json``) joins the two ``sweep.json`` files and
recomputes the per-point statistics over every seed; each part keeps its own provenance (commit, versions).

Ray runs in-process on this machine's cores by default, or on an existing cluster given its address (the sweep
folder must then be on a filesystem that every node mounts at the same path: workers write the trial folders). A
Ray started here dies with this process, ``kill -9`` included (:mod:`irlb.ray_processes`); a cluster is left as it
was. A trial lost with its node is a failed attempt like any other (``max_failures``), and the rerun runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from irl_bilevel.config import Config, NonEmpty, Seed, load_json_object, parse_overrides
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.validation import ValidationError, read_json_file
from irlb.config import experiment_config
from irlb.ray_processes import MARKER, Watchdog, start_watchdog
from irlb.registry import EXPERIMENTS

# The number a trial reports when the sweep does not name one: a dotted path into the experiment's result file.
DEFAULT_METRICS = {
    "loss_sweep": "summary.sigmoid.normalized_return_stochastic.iqm",
    "feedback_consistency": "group_agreement.all.krippendorff_alpha_ordinal",
    "learned_shaping": "hypergradient_accuracy.finite_difference_relative_error",
}
FALLBACK_METRIC = "seconds"
DONE = "done.json"
_LOCAL_RAYS: list[tuple[Watchdog | None, str | None]] = []  # what start_ray started: stop_ray ends it


@dataclass(frozen=True)
class SweepSpec(Config):
    """What a sweep runs; a JSON file of these keys, updated by command-line options."""

    experiment: str  # a name of irlb.registry.EXPERIMENTS (or any name, with `module`)
    scale: str = "quick"  # base settings: the experiment's SCALES entry
    grid: dict[str, Annotated[list[Any], NonEmpty()]] = field(default_factory=dict)  # dotted key -> values (product)
    seeds: Annotated[tuple[Seed, ...], NonEmpty()] = (0,)  # every grid point runs once per seed
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed dotted config key -> value, before the grid
    metric: str | None = None  # dotted path into the result file (default: DEFAULT_METRICS, else "seconds")
    extra_metrics: tuple[str, ...] = ()  # more dotted paths, summarized per grid point like the metric
    module: str | None = None  # the experiment's module (default: from irlb.registry.EXPERIMENTS)

    def module_name(self) -> str:
        if self.module is not None:
            return self.module
        if self.experiment not in EXPERIMENTS:
            raise ValidationError(f"experiment: unknown experiment {self.experiment!r}; expected one of "
                                  f"{sorted(EXPERIMENTS)}")
        return EXPERIMENTS[self.experiment][0]

    def metric_path(self) -> str:
        return self.metric or DEFAULT_METRICS.get(self.experiment, FALLBACK_METRIC)


@dataclass(frozen=True)
class Trial:
    """One grid point × one seed."""

    trial_id: str
    point: dict[str, Any]  # the grid values of this trial
    seed: int
    config: dict[str, Any]  # the full settings (plain JSON) that `run` receives as a typed config


def load_spec(spec_file: str | Path | None = None, **options: Any) -> SweepSpec:
    """A :class:`SweepSpec` from a JSON file, with ``options`` (those not None) replacing its keys."""
    values = load_json_object(spec_file, "--spec") if spec_file is not None else {}
    values.update({k: v for k, v in options.items() if v is not None})
    if "experiment" not in values:
        raise ValidationError("experiment: a sweep needs an experiment (--experiment or \"experiment\" in --spec)")
    return SweepSpec.from_dict(values, "sweep")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["a=[1, 2]", "b.c=[0.1]"]`` -> ``{"a": [1, 2], "b.c": [0.1]}``; every value must be a JSON list."""
    grid = parse_overrides(items, "--grid")
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ValidationError(f"--grid {key}: expected a JSON list of values, e.g. {key}=[1,2], got {values!r}")
    return grid


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of ``spec``, grid points in order, seeds innermost. Each grid point's config is validated
    here, before anything runs."""
    module = importlib.import_module(spec.module_name())
    base = experiment_config(spec.experiment, spec.scale, overrides=dict(spec.overrides), module=module)
    keys = list(spec.grid)
    trials = []
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        point = dict(zip(keys, values))
        config = base.updated(point, where=spec.experiment).to_dict()
        for seed in spec.seeds:
            trials.append(Trial(trial_id(spec.experiment, spec.scale, config, seed), point, seed, config))
    return trials


def trial_id(experiment: str, scale: str, config: dict[str, Any], seed: int) -> str:
    """``<experiment>-<10 hex digits of sha256(experiment, scale, config, seed)>-s<seed>``: stable across runs."""
    text = json.dumps({"experiment": experiment, "scale": scale, "config": config, "seed": seed}, sort_keys=True)
    return f"{experiment}-{hashlib.sha256(text.encode()).hexdigest()[:10]}-s{seed}"


def is_done(trial_dir: Path) -> bool:
    return (trial_dir / DONE).is_file()


def read_attempts(trial_dir: Path) -> int:
    """How many times the trial in ``trial_dir`` has started (its ``trial.json``; 0 without one). A damaged
    ``trial.json`` is a :class:`ValidationError` naming it."""
    path = trial_dir / "trial.json"
    if not path.exists():
        return 0
    hint = "; delete it to start that trial afresh (the sweep's other trials are kept)"
    attempt = read_json_file(path, "trial.json", recovery=hint).get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValidationError(f"trial.json: {path} has attempt {attempt!r}; expected a count{hint}")
    return attempt


def read_done(trial_dir: Path) -> dict[str, Any]:
    """The record a finished trial left in ``done.json`` (what the summary reads: ``seconds``, ``metric``,
    ``result_file``), checked; a damaged one is a :class:`ValidationError` naming it (deleting it reruns the
    trial)."""
    path = trial_dir / DONE
    hint = "; delete it to run that trial again (the sweep's other trials are kept)"
    record = read_json_file(path, "done.json", recovery=hint)

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    checks = {"seconds": number, "metric": lambda v: v is None or number(v),
              "result_file": lambda v: isinstance(v, str) and bool(v)}
    for key, check in checks.items():
        if key not in record or not check(record[key]):
            raise ValidationError(f"done.json: {path} has no valid {key!r} ({record.get(key)!r}){hint}")
    return record


def run_trial(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one trial in a Ray worker (or anywhere): ``payload`` holds the :class:`Trial` fields plus
    ``experiment``, ``module``, ``scale``, ``trial_dir``, ``metric`` and ``threads``. Raises on failure
    (Tune retries), after writing ``error.json``."""
    import torch

    trial_dir = Path(payload["trial_dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    previous = trial_dir / "trial.json"
    attempt = read_attempts(trial_dir) + 1
    torch.set_num_threads(int(payload["threads"]))
    write_json(previous, {**{k: payload[k] for k in ("trial_id", "experiment", "scale", "point", "seed", "config")},
                          "attempt": attempt, "node": node_record(), "provenance": provenance(payload["seed"])})
    started = time.perf_counter()
    try:
        module = importlib.import_module(payload["module"])
        config = module.CONFIG.from_dict(payload["config"], payload["experiment"])
        result_path = Path(module.run(payload["scale"], trial_dir, seed=payload["seed"], progress=False,
                                      config=config))
        metric = lookup(json.loads(result_path.read_text()), payload["metric"])
    except BaseException as error:
        write_json(trial_dir / "error.json", {"attempt": attempt, "error": repr(error),
                                              "traceback": traceback.format_exc()})
        raise
    seconds = time.perf_counter() - started
    record = {"trial_id": payload["trial_id"], "status": "done", "seconds": seconds, "metric": metric,
              "metric_path": payload["metric"], "result_file": result_path.name, "attempt": attempt,
              "node": node_record(), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (trial_dir / "error.json").unlink(missing_ok=True)
    write_json(trial_dir / DONE, record)  # last: its presence means the trial is complete
    return {"metric": metric, "seconds": seconds, "attempt": attempt}


def node_record() -> dict[str, Any]:
    """Where this process runs: the host name and, inside Ray, the node's IP address and Ray node id (the only
    one of the three that tells apart two Ray nodes on one host)."""
    record: dict[str, Any] = {"hostname": socket.gethostname()}
    ray = sys.modules.get("ray")  # imported in every Ray worker; never imported here for a trial run without Ray
    if ray is not None and ray.is_initialized():
        record.update(node_ip=ray.util.get_node_ip_address(), node_id=ray.get_runtime_context().get_node_id())
    return record


def lookup(record: Any, path: str) -> float | None:
    """The number at the dotted ``path`` of a result (list indices as integers); None if absent or not a number."""
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _tune_trainable(config: dict[str, Any]) -> dict[str, Any]:
    return run_trial(config["trial"])


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at ``address``, or start Ray in this process with ``num_cpus`` (default: every
    core) and no dashboard. Returns whether this call started Ray (then the caller shuts it down with
    :func:`stop_ray`).

    A Ray started here is tagged and watched (:mod:`irlb.ray_processes`): if this process dies, even by
    ``kill -9``, a watchdog kills every process of that Ray and removes its temp folder."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local in-process Ray: no token (silences a warning)
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return True
    temp_dir = short_ray_temp_dir()
    token = f"{os.getpid()}-{secrets.token_hex(6)}"
    _LOCAL_RAYS.append((start_watchdog(token, temp_dir), temp_dir))  # started first: it must not carry the token
    # Inherited by every process ray.init starts, and by every process those start. SPT_NOENV keeps Ray's
    # setproctitle (agents and workers rename themselves "ray::...") from writing the title over the memory that
    # /proc/<pid>/environ shows, which would hide the marker from the watchdog.
    tags = {MARKER: token, "SPT_NOENV": "1"}
    previous = {name: os.environ.get(name) for name in tags}
    os.environ.update(tags)
    try:
        # address="local": a new Ray even where RAY_ADDRESS or a `ray start` on this machine names a cluster
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False, _temp_dir=temp_dir)
    except BaseException:
        stop_ray()
        raise
    finally:
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    return True


def stop_ray() -> None:
    """Shut Ray down; for a Ray that :func:`start_ray` started, kill what is left of it and remove its temp
    folder."""
    import ray

    ray.shutdown()
    while _LOCAL_RAYS:
        watchdog, temp_dir = _LOCAL_RAYS.pop()
        if watchdog is not None:
            watchdog.close()  # it kills the leftovers and removes temp_dir
        elif temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def short_ray_temp_dir() -> str | None:
    """Ray's session folder (from RAY_TMPDIR, else TMPDIR) holds unix sockets, whose paths must stay under
    about 107 characters; a deep temp folder gets a short one under /tmp instead."""
    base = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    if len(base) <= 40:
        return None
    return tempfile.mkdtemp(prefix="ray-", dir="/tmp" if os.path.isdir("/tmp") else None)


def run_sweep(spec: SweepSpec, sweep_dir: str | Path, *, address: str | None = None, num_cpus: int | None = None,
              cpus_per_trial: int = 1, max_concurrent: int | None = None, max_failures: int = 1,
              verbose: bool = True) -> dict[str, Any]:
    """Run the missing trials of ``spec`` into ``sweep_dir`` on Ray Tune; write and return the summary
    (also ``sweep_dir/sweep.json``): per-trial rows and per-grid-point IQM with bootstrap CI of the metric."""
    if max_failures < 0:
        raise ValidationError(f"max_failures: expected a non-negative integer, got {max_failures}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ValidationError(f"max_concurrent: expected a positive integer, got {max_concurrent}")
    if cpus_per_trial < 1:
        raise ValidationError(f"cpus_per_trial: expected a positive integer, got {cpus_per_trial}")
    sweep_dir = Path(sweep_dir).resolve()
    trials = expand(spec)
    pending = [t for t in trials if not is_done(sweep_dir / t.trial_id)]
    waiting = {t.trial_id for t in pending}
    for trial in trials:  # a damaged done.json or trial.json fails here, before anything is written
        if trial.trial_id not in waiting:
            read_done(sweep_dir / trial.trial_id)
        else:
            read_attempts(sweep_dir / trial.trial_id)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_dir / "spec.json", spec.to_dict())
    ran: set[str] = {t.trial_id for t in pending}
    if verbose:
        print(f"sweep {spec.experiment} ({spec.scale}): {len(trials)} trials, {len(trials) - len(pending)} "
              f"already done, {len(pending)} to run", flush=True)
    if pending:
        _tune(spec, sweep_dir, pending, address, num_cpus, cpus_per_trial, max_concurrent, max_failures)
    summary = summarize(spec, sweep_dir, trials, ran)
    write_json(sweep_dir / "sweep.json", summary)
    if verbose:
        print(format_table(summary))
    return summary


def _tune(spec: SweepSpec, sweep_dir: Path, pending: list[Trial], address: str | None, num_cpus: int | None,
          cpus_per_trial: int, max_concurrent: int | None, max_failures: int) -> None:
    from ray import tune

    started_here = start_ray(address, num_cpus)
    try:
        payloads = [{**dataclasses.asdict(t), "experiment": spec.experiment, "module": spec.module_name(),
                     "scale": spec.scale, "trial_dir": str(sweep_dir / t.trial_id), "metric": spec.metric_path(),
                     "threads": cpus_per_trial} for t in pending]
        tuner = tune.Tuner(
            tune.with_resources(_tune_trainable, {"cpu": cpus_per_trial}),
            param_space={"trial": tune.grid_search(payloads)},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                        trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                                        trial_dirname_creator=lambda t: t.config["trial"]["trial_id"]),
            run_config=tune.RunConfig(
                name=datetime.now(timezone.utc).strftime("tune-%Y%m%d-%H%M%S-%f"),
                storage_path=str(sweep_dir / ".tune"), verbose=0,
                failure_config=tune.FailureConfig(max_failures=max_failures)),
        )
        tuner.fit()  # failed trials are reported in the ResultGrid, not raised; done.json files tell the outcome
    finally:
        if started_here:
            stop_ray()


def summarize(spec: SweepSpec, sweep_dir: Path, trials: list[Trial], ran: set[str]) -> dict[str, Any]:
    """Rows of every trial of ``spec`` (status ``done`` / ``skipped`` (done before) / ``failed``) and, per grid
    point, the metric over seeds (:func:`grid_points`)."""
    rows = []
    for trial in trials:
        folder = sweep_dir / trial.trial_id
        row: dict[str, Any] = {"trial_id": trial.trial_id, "point": trial.point, "seed": trial.seed}
        if is_done(folder):
            done = read_done(folder)
            row.update(status="done" if trial.trial_id in ran else "skipped", seconds=done["seconds"],
                       metric=done["metric"], attempts=done.get("attempt"), node=done.get("node"))
            if spec.extra_metrics:
                result = read_json_file(folder / done["result_file"], "result file")
                row["extra_metrics"] = {path: lookup(result, path) for path in spec.extra_metrics}
        else:
            error = folder / "error.json"
            row.update(status="failed", seconds=None, metric=None, error=_failure(error))
        rows.append(row)
    return {"experiment": spec.experiment, "scale": spec.scale, "metric": spec.metric_path(),
            "extra_metrics": list(spec.extra_metrics), "spec": spec.to_dict(),
            "trials": rows, "grid_points": grid_points(rows, spec.extra_metrics),
            "complete": all(r["status"] != "failed" for r in rows), "provenance": provenance(None)}


def _failure(error_file: Path) -> str:
    """What a failed trial's ``error.json`` says (its worker wrote it just now), or why it cannot say."""
    if not error_file.is_file():
        return "did not finish"
    try:
        return str(read_json_file(error_file, "error.json")["error"])
    except (ValidationError, KeyError):
        return f"failed; {error_file} is unreadable"


def grid_points(rows: list[dict[str, Any]], extra_metrics: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """Per grid point of the trial ``rows``, the metric (and each extra metric) over seeds: values, IQM with a 95%
    bootstrap CI (``n`` = finished seeds)."""
    points = []
    for point_json in dict.fromkeys(json.dumps(r["point"], sort_keys=True) for r in rows):
        group = [r for r in rows if json.dumps(r["point"], sort_keys=True) == point_json]
        values = [r["metric"] for r in group if r["metric"] is not None]
        point: dict[str, Any] = {"point": json.loads(point_json),
                                 "seeds": [r["seed"] for r in group if r["metric"] is not None],
                                 "values": values, **iqm_with_ci(values)}
        if extra_metrics:
            point["extra_metrics"] = {}
            for path in extra_metrics:
                extra = [r["extra_metrics"][path] for r in group if r.get("extra_metrics", {}).get(path) is not None]
                point["extra_metrics"][path] = {"values": extra, **iqm_with_ci(extra)}
        points.append(point)
    return points


def merge_sweeps(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from sweeps of the same experiment, scale, grid, overrides and metrics that ran different seeds
    (e.g. seeds 3 and 4 added to an earlier sweep of seeds 0-2 whose trial folders are gone): the trial rows of all,
    per grid point the statistics recomputed over every seed, and each part's spec and provenance in ``merged_from``.
    A trial that appears in two parts is an error: a merge adds seeds, it never picks between two runs of one."""
    if len(summaries) < 2:
        raise ValidationError(f"summaries: expected at least two sweep summaries to merge, got {len(summaries)}")
    for index, summary in enumerate(summaries):
        check_summary(summary, f"summaries[{index}]")
    first = summaries[0]
    same = ("experiment", "scale", "metric", "extra_metrics")
    for index, summary in enumerate(summaries[1:], start=1):
        for key in same:
            if summary[key] != first[key]:
                raise ValidationError(f"summaries[{index}].{key}: expected {first[key]!r} (as in summaries[0]), "
                                      f"got {summary[key]!r}")
        for key in ("grid", "overrides"):
            if summary["spec"][key] != first["spec"][key]:
                raise ValidationError(f"summaries[{index}].spec.{key}: expected {first['spec'][key]!r} (as in "
                                      f"summaries[0]), got {summary['spec'][key]!r}")
    rows = [row for summary in summaries for row in summary["trials"]]
    seen: set[str] = set()
    for row in rows:
        if row["trial_id"] in seen:
            raise ValidationError(f"trials: {row['trial_id']} is in more than one sweep; expected disjoint seeds")
        seen.add(row["trial_id"])
    rows.sort(key=lambda row: (json.dumps(row["point"], sort_keys=True), row["seed"]))
    seeds = sorted({seed for summary in summaries for seed in summary["spec"]["seeds"]})
    return {**{key: first[key] for key in same}, "spec": {**first["spec"], "seeds": seeds}, "trials": rows,
            "grid_points": grid_points(rows, first["extra_metrics"]),
            "complete": all(summary["complete"] for summary in summaries),
            "merged_from": [{"spec": s["spec"], "provenance": s["provenance"]} for s in summaries],
            "provenance": provenance(None)}


SUMMARY_KEYS = {"experiment": str, "scale": str, "metric": str, "extra_metrics": list, "spec": dict, "trials": list,
                "complete": bool, "provenance": dict}
TRIAL_ROW_KEYS = ("trial_id", "point", "seed", "status", "seconds", "metric")


def check_summary(summary: Any, where: str) -> None:
    """Check that ``summary`` has the structure of a ``sweep.json`` (what :func:`merge_sweeps` reads)."""
    if not isinstance(summary, dict):
        raise ValidationError(f"{where}: expected a sweep summary (a JSON object), got {type(summary).__name__}")
    for key, kind in SUMMARY_KEYS.items():
        if not isinstance(summary.get(key), kind):
            raise ValidationError(f"{where}.{key}: expected a {kind.__name__} in a sweep summary (sweep.json), got "
                                  f"{summary.get(key)!r:.80}")
    for key, kind in (("grid", dict), ("overrides", dict), ("seeds", list)):
        if not isinstance(summary["spec"].get(key), kind):
            raise ValidationError(f"{where}.spec.{key}: expected a {kind.__name__}, got "
                                  f"{summary['spec'].get(key)!r:.80}")
    for number, row in enumerate(summary["trials"]):
        if not isinstance(row, dict) or any(key not in row for key in TRIAL_ROW_KEYS):
            raise ValidationError(f"{where}.trials[{number}]: expected a trial row with {list(TRIAL_ROW_KEYS)}, got "
                                  f"{row!r:.80}")
        if row["metric"] is not None and (isinstance(row["metric"], bool)
                                          or not isinstance(row["metric"], (int, float))):
            raise ValidationError(f"{where}.trials[{number}].metric: expected a number or null, got {row['metric']!r}")


def format_table(summary: dict[str, Any]) -> str:
    """The final table: one line per trial, then one per grid point."""
    lines = [f"{'trial':40s} {'status':8s} {'seconds':>8s}  {summary['metric']}"]
    for row in summary["trials"]:
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        metric = "" if row["metric"] is None else f"{row['metric']:.6g}"
        lines.append(f"{row['trial_id']:40s} {row['status']:8s} {seconds:>8s}  {metric}")
    lines.append(f"\n{'grid point':40s} {'seeds':>5s}  IQM [95% CI]")
    for point in summary["grid_points"]:
        label = json.dumps(point["point"], sort_keys=True) if point["point"] else "(no grid)"
        lines.append(f"{label:40s} {point['n']:5d}  {point['iqm']:.6g} [{point['low']:.6g}, {point['high']:.6g}]")
    return "\n".join(lines)
