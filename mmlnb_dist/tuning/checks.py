"""What a search checks before Ray starts: the trial recipe's own config checks, that the space searches keys the
trial reads, and whether a trial could ever be placed. A failure is a `SearchError` (or the recipe's own error)
instead of every trial failing, or waiting, later."""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import types
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from ..config import Config
from ..config.tune import kept_metric, metric_direction, reported_metrics, reporting_recipe
from ..core.errors import ConfigError, UserError
from ..core.files import refuse_file_in_the_way
from .algorithms import asha_horizon
from .space import SpaceError, load_space, resolve_space, to_tune_space
from .trial import PIPELINE_RECIPES, PIPELINE_SPACES, TRIAL_SET_KEYS

log = logging.getLogger(__name__)

RESTORED_SETTINGS = ("num_samples", "searcher")
"""`tune.*` settings a resumed search keeps from its start (Tune restores its searcher), recorded in search.json."""


class SearchError(UserError, RuntimeError):
    """The search cannot start or resume as configured; the message says what to change."""


def check_search(cfg: Config, space: Optional[Dict[str, Any]] = None, source: Any = None) -> Optional[int]:
    """What the searcher and the scheduler need of the config, checked before anything is written (by `tune` before
    its folder and parent run exist, and by `config validate`): ASHA's grace period within its max_t,
    and for `tune.searcher=grid` a space of choice/grid values only (`space`: loaded from `source`; by default the
    search's own, `tune.space` or the trial recipe's). Ray found both only once the search had started: a raw
    `AssertionError: grace_period must be <= max_t!`, and a search folder that refused the corrected command.
    Returns ASHA's max_t (None under FIFO, or when the recipe cannot count its reports), for `scheduler`."""
    from ..recipes import RECIPES

    t = cfg.tune
    kept_metric(cfg)  # refuses a train.best_metric set apart from tune.metric (`run_search` gives trials this one)
    spec = RECIPES.get(t.recipe)
    counted = spec is not None and bool(spec.reports) and not t.max_t  # reports not one per epoch (vlm)
    # the keys that change how many reports a trial makes: an epoch-reporting recipe's `train.epochs`
    count_keys = () if spec is None or t.max_t else spec.report_count_keys if spec.reports else ("train.epochs",)
    if space is None and ((t.scheduler == "asha" and count_keys) or t.searcher == "grid"):
        source = resolve_space(t.space or default_space(t.recipe))
        space = load_space(source)
    if t.scheduler == "asha" and count_keys:
        varied = [k for k in space if k in count_keys]
        if varied:  # ASHA would stop the trials that report more often than the base config at its max_t
            raise ConfigError(f"{source or 'the search space'} varies {', '.join(varied)}, so tune.recipe={t.recipe} "
                              f"trials make different numbers of reports: set tune.max_t to the most any trial makes, "
                              f"or use tune.scheduler=fifo")
    max_t = asha_horizon(cfg) if t.scheduler == "asha" else None
    if max_t is not None and t.grace_period > max_t:
        if t.max_t:
            compared = f"tune.max_t={t.max_t}"
        elif counted:  # a vlm trial reports per validation, whatever train.epochs says
            compared = (f"the {max_t} report(s) a tune.recipe={t.recipe} trial of this config makes (ASHA's max_t "
                        f"while tune.max_t is unset)")
        else:
            compared = f"train.epochs={cfg.train.epochs} (ASHA's max_t while tune.max_t is unset)"
        raise ConfigError(f"tune.grace_period={t.grace_period} is more than {compared}, the most reports ASHA lets "
                          f"a trial make: it cannot let every trial run that long before stopping one. Set "
                          f"tune.grace_period to at most {max_t}, or use tune.scheduler=fifo")
    if t.scheduler == "asha" and t.max_t:
        _refuse_max_t_below_the_reports(cfg, spec, space, source)
    if t.searcher == "grid":
        try:
            to_tune_space(space, "grid", cfg.train.epochs)
        except SpaceError as err:
            raise SpaceError(f"{source or 'the search space'}: tune.{err}; use tune.searcher=random or optuna for "
                             f"its ranges, or give every key a choice or grid") from None
    return max_t


def _refuse_max_t_below_the_reports(cfg: Config, spec: Any, space: Optional[Dict[str, Any]], source: Any) -> None:
    """ASHA stops every trial at `tune.max_t` reports: below the reports a trial of the base config makes (or, for
    a space's `train.epochs` choices, its longest trial), no trial trained as configured (no test split, no
    export), the best was picked from partial runs, and best.yaml then trains the whole run."""
    from ..recipes import load_class

    t = cfg.tune
    if spec is not None and spec.reports:  # vlm: one report per validation
        made = load_class(spec.reports, "tune.recipe")(cfg)
        what = f"one per validation of a tune.recipe={t.recipe} trial"
        fix = f"make fewer ({', '.join(spec.report_count_keys)})"
    else:
        made, what, fix = cfg.train.epochs, f"one per epoch, train.epochs={cfg.train.epochs}", \
            f"set train.epochs={t.max_t}"
        most = _most_epochs((space or {}).get("train.epochs"))
        if most is not None and most > made:
            made, what = most, f"one per epoch, up to train.epochs={most} in {source or 'the search space'}"
            fix = f"keep the space's train.epochs at most {t.max_t}"
    if made is not None and t.max_t < made:
        raise ConfigError(f"tune.max_t={t.max_t} is less than the {made} reports a trial makes ({what}): ASHA stops "
                          f"every trial at max_t, so such a trial would never train as configured (no test split, no "
                          f"export) and the best config, which best.yaml trains in full, would be chosen on partial "
                          f"runs. Set tune.max_t to at least {made} (or leave it unset), or {fix}")


def _most_epochs(entry: Any) -> Optional[int]:
    """The most epochs a space's `train.epochs` entry gives (its choice or grid values, a randint's high - 1, a
    quniform's high end, which Ray's qrandint includes); None for a fixed value. Whole floats count (`6.0`, taken
    as 6): a quniform, or a choice with one, was not counted, and ASHA stopped its longest trials at max_t."""
    def whole(v: Any) -> Optional[int]:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() else None

    values = (entry.get("choice") or entry.get("grid")) if isinstance(entry, dict) else None
    if isinstance(values, list) and values:
        epochs = [whole(v) for v in values]
        return max(epochs) if None not in epochs else None  # type: ignore[type-var]
    for kind, below in (("randint", 1), ("quniform", 0)):  # randint's high end is exclusive
        ends = entry.get(kind) if isinstance(entry, dict) else None
        if isinstance(ends, list) and len(ends) >= 2 and whole(ends[1]) is not None:
            return whole(ends[1]) - below  # type: ignore[operator]
    return None


def check_recipe(cfg: Config) -> None:
    """The trial recipe's own checks (`check(cfg, env)` of the recipe protocol) on the base config and the trials'
    world size, before Ray starts: a missing shard set is one clear error instead of an error in every trial."""
    from ..core.distributed import DistEnv
    from ..recipes import RECIPES, load_class

    spec = RECIPES.get(cfg.tune.recipe)
    if spec is None:  # a pipeline, or a recipe class outside the table: its trials check it
        return
    check = getattr(load_class(spec.target), "check", None)
    if check is not None:
        check(cfg, DistEnv(world_size=cfg.tune.workers_per_trial))


def default_space(recipe: str) -> str:
    """The shipped space a search of trial kind `recipe` uses without `--space`: its recipe's `tune_space`, a
    pipeline's own, else (a recipe class outside the table) the fusion curriculum."""
    from ..recipes import RECIPES

    if recipe in PIPELINE_SPACES:
        return PIPELINE_SPACES[recipe]
    if recipe not in RECIPES:
        return "curriculum"
    if not RECIPES[recipe].tune_space:
        raise SearchError(f"tune.recipe={recipe} has no shipped search space: give --space FILE (or tune.space)")
    return RECIPES[recipe].tune_space


def check_space_is_read(space: Dict[str, Any], recipe: str, path: Any) -> None:
    """Refuse a space with keys of a recipe section the trial never reads (the fusion curriculum searched by CLIP
    trials), or keys the search sets in every trial (`TRIAL_SET_KEYS`, `tune.*`): every trial would train the same
    model on them, and the "best" value would be noise."""
    from ..recipes import RECIPES, unread_keys

    fixed = [key for key in space if key in TRIAL_SET_KEYS or key.startswith("tune.")]
    if fixed:  # replaced in every trial (tune.*: the driver's): the best value would be noise
        raise SpaceError(f"{path}: {', '.join(fixed)} is set by the search itself (each trial's run folder, tracking "
                         f"and validation-only evaluation; tune.* are the search's settings), not by a trial's "
                         f"sampled values: drop it from the space (set tune.* as overrides)")
    names = PIPELINE_RECIPES.get(recipe, (recipe,))
    unread = unread_keys(list(space), *names)
    if unread:
        reads = sorted(RECIPES[n].section for n in names)
        raise SpaceError(f"{path}: tune.recipe={recipe} never reads {', '.join(unread)}: every trial would train the "
                         f"same model on these keys. Search keys it reads (train.*, {', '.join(reads)}.*), "
                         f"e.g. --space {default_space(recipe)}")


def _number_field(annotation: Any) -> bool:
    """A field of numbers only: int or float, or an Optional/Union of them."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_number_field(a) for a in args)
    return annotation in (int, float)


def check_choice_values(space: Dict[str, Any], path: Any) -> None:
    """Refuse text in a choice or grid of a number field: YAML reads `1e-4` as text, and the trials' config turned it
    into a number, but Ray's table, trials.csv, best_params, the parent run's tags and search.png held the strings
    (and Optuna searched them as labels)."""
    from ..core.config import field_annotation

    for key, spec in space.items():
        kind = "choice" if "choice" in spec else "grid" if "grid" in spec else None
        text = [v for v in spec[kind] if isinstance(v, str)] if kind else []
        if text and _number_field(field_annotation(Config, key)):
            raise SpaceError(f"{path}: '{key}' takes numbers, but its {kind} holds text "
                             f"{', '.join(repr(v) for v in text)}: write numbers (YAML reads 1e-4 as text: write "
                             f"1.0e-4)")


def stored_goal(exp_dir: Path) -> Optional[Tuple[str, str]]:
    """The metric and mode the search at `exp_dir` was started with, which `Tuner.restore` brings back whatever the
    resuming config says: from the driver's record `search.json`, else (a search from before the driver recorded
    them) from Tune's own state file `tuner.pkl`, which `Tuner.restore` unpickles anyway; None when neither says."""
    try:
        state = json.loads((exp_dir / "search.json").read_text())
        if isinstance(state, dict) and state.get("metric"):
            return state["metric"], state.get("mode")
    except (OSError, ValueError):
        pass
    try:
        with open(exp_dir / "tuner.pkl", "rb") as fh:
            stored = pickle.load(fh)["_tune_config"]  # Tune's own state file, in the search's own folder
        return (stored.metric, stored.mode) if stored.metric else None
    except Exception:  # noqa: BLE001 - another Ray's format, or a partial file: nothing to compare
        return None


def check_resume_goal(cfg: Config, exp_dir: Path, mode: str) -> None:
    """Refuse, before Ray starts, to resume a search under another `tune.metric` or `tune.mode` (`mode`: resolved)
    than it was started with: Ray restores its stored ones (its trials, ASHA and the searcher would follow those
    while the best-trial choice followed the new ones), and a stored metric the trials never report failed every
    resume in a trial."""
    if not cfg.tune.resume or not (exp_dir / "tuner.pkl").is_file():
        return  # no Tuner stored: the search starts with the config's metric
    stored = stored_goal(exp_dir)
    if stored is None or stored == (cfg.tune.metric, mode):
        return
    metric, stored_mode = stored
    said = f"search '{cfg.tune.name}' at {exp_dir} was started with tune.metric={metric} tune.mode={stored_mode}"
    spec, direction = reporting_recipe(cfg), metric_direction(cfg, metric)
    why = ("which its trials never report" if spec is not None and metric not in reported_metrics(cfg, spec) else
           f"which the config now refuses ({'lower' if direction == 'min' else 'higher'} is better for {metric})"
           if spec is not None and stored_mode != direction else None)
    if why:  # a search started before these were checked
        raise SearchError(f"{said}, {why}: it cannot resume; start a new search under another tune.name (its "
                          f"trials stay in {exp_dir})")
    raise SearchError(f"{said}, and a resumed search keeps its own: resume it with tune.metric={metric} "
                      f"tune.mode={stored_mode}, or start a new search under another tune.name")


def check_resume_space(cfg: Config, exp_dir: Path, space: Dict[str, Any], space_path: Path) -> None:
    """Refuse, before Ray starts, to resume a search with another space than it was started with (`space`: the
    loaded params of `space_path`): Ray restores its stored param space, so the trials went on sampling the old keys
    while the driver read the new ones (best.yaml lost the best trial's values). Compared by content, so a space
    file moved or named another way resumes; a search recorded before the content was is compared to the file it
    names, and goes on when that file is gone."""
    if not cfg.tune.resume or not (exp_dir / "tuner.pkl").is_file():
        return  # no Tuner stored: the search starts with this space
    try:
        state = json.loads((exp_dir / "search.json").read_text())
    except (OSError, ValueError):
        return
    stored, stored_path = state.get("space_params"), state.get("space")
    if stored is None and stored_path:
        try:
            stored = load_space(stored_path)
        except (SpaceError, OSError):
            return
    now = json.loads(json.dumps(space))
    if stored is None or stored == now:
        return
    if stored_path and Path(stored_path).resolve() == Path(space_path).resolve():  # the file was edited in place
        changed = "; ".join(f"{k}: {stored.get(k, 'absent')} then, {now.get(k, 'absent')} now"
                            for k in dict.fromkeys([*stored, *now]) if stored.get(k) != now.get(k))
        raise SearchError(f"the space file {space_path} changed since search '{cfg.tune.name}' started ({changed}), "
                          f"and a resumed search keeps its own (Ray restores it): restore the file as it was "
                          f"(space_params in {exp_dir / 'search.json'}), or start a new search under another "
                          f"tune.name")
    raise SearchError(f"search '{cfg.tune.name}' at {exp_dir} was started with the space {stored_path} "
                      f"({', '.join(stored)}), not {space_path} ({', '.join(space)}), and a resumed search keeps its "
                      f"own (Ray restores it): resume it with --space {stored_path}, or start a new search under "
                      f"another tune.name")


def recorded_base(base: Dict[str, Any]) -> Dict[str, Any]:
    """The base config a search records (search.json `base`): all but `tune.*` (checked or warned of on their own),
    `tracking.*` (where the trials log, not what they train), `run.resume` and the keys each trial sets itself
    (`TRIAL_SET_KEYS`), as flat dotted keys."""
    def flat(value: Any, prefix: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            return {prefix: value}
        return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}.{key}" if prefix else key).items()}

    return {k: v for k, v in flat(base, "").items()
            if not k.startswith(("tune.", "tracking.")) and k != "run.resume" and k not in TRIAL_SET_KEYS}


def started_with(exp_dir: Path, key: str) -> Any:
    """The dotted `key`'s value in the base config the search at `exp_dir` recorded (search.json), else None."""
    try:
        base = json.loads((exp_dir / "search.json").read_text()).get("base")
    except (OSError, ValueError, AttributeError):
        return None
    return base.get(key) if isinstance(base, dict) else None


def check_resume_base(cfg: Config, exp_dir: Path, base: Dict[str, Any]) -> None:
    """Refuse, before Ray starts, to resume a search with another base config than it was started with (`base`: the
    config as a dict): the remaining trials trained under other settings (`train.epochs=20`, other shards) than the
    finished ones, ranked together with them, without a word. A search recorded before the base was goes on."""
    if not cfg.tune.resume or not (exp_dir / "tuner.pkl").is_file():
        return
    try:
        stored = json.loads((exp_dir / "search.json").read_text()).get("base")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(stored, dict):
        return
    now = json.loads(json.dumps(recorded_base(base)))
    changed = [f"{k}={stored.get(k)!r} (now {now.get(k)!r})" for k in dict.fromkeys([*stored, *now])
               if stored.get(k) != now.get(k)]
    if changed:
        raise SearchError(f"search '{cfg.tune.name}' at {exp_dir} was started with another base config: "
                          f"{', '.join(changed)}; its remaining trials would train under other settings than its "
                          f"finished ones. Resume it with the config it was started with, or start a new search "
                          f"under another tune.name")


def warn_ignored_on_resume(cfg: Config, stored: Dict[str, Any]) -> None:
    """Say which settings a resume ignores (`stored`: what the search was started with): Tune restores its searcher
    and sample count, so another `tune.num_samples` or `tune.searcher` changed nothing, without a word."""
    for key in RESTORED_SETTINGS:
        asked = getattr(cfg.tune, key)
        if stored.get(key) is not None and stored[key] != asked:
            log.warning("tune.%s=%s is ignored: search '%s' was started with tune.%s=%s, which a resume keeps (Ray "
                        "restores its searcher); start a new search under another tune.name to change it", key,
                        asked, cfg.tune.name, key, stored[key])


UNREPORTED_METRIC = re.compile(r"did not include the specified metric\(s\) `([^`]*)`.*?Result: \{(.*)\}", re.S)
"""Ray's words when a trial's report lacks the search's metric (its controller's ValueError, in a TuneError)."""


def unreported_metric(cfg: Config, err: BaseException, exp_dir: Path) -> Optional[SearchError]:
    """The SearchError for Ray's stop of a search whose trials never report `tune.metric` (a recipe outside the
    table: `check_goal` knows the table's), naming what a trial did report; None for any other error. Ray ends the
    whole search at that first report, with two screens of traceback."""
    from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS

    from ..core.recipe import FINAL_REPORT

    found = UNREPORTED_METRIC.search(str(err))
    if found is None:
        return None
    ray_keys = {*AUTO_RESULT_KEYS, *DEBUG_METRICS, "done", "epoch", FINAL_REPORT}
    reported = [k for k in re.findall(r"'([^']+)': ", found.group(2)) if k not in ray_keys
                and not k.startswith("config/")]
    return SearchError(f"tune.metric={cfg.tune.metric} is not reported by the trials of tune.recipe={cfg.tune.recipe}"
                       + (f" (a trial reported {', '.join(reported)})" if reported else "")
                       + f": Ray stopped the search at its first report. Set tune.metric to a name they report, and "
                         f"start it again under another tune.name (or move {exp_dir} away)")


def check_outputs(dirs: Dict[str, Path]) -> None:
    """Refuse, before anything runs, outputs the search could not write: `tune.best_config` is written once every
    trial has run (a folder there, or a file where its folder goes, ended the search in a traceback and without its
    summary), and the shared cache folder is made before Ray starts (`dirs`: the driver's resolved paths)."""
    # first: the default cache and best.yaml lie in it, and were named for a storage path that is a file
    refuse_file_in_the_way(dirs["exp"], "the search's storage folder (tune.storage_path, else <run.output_dir>/tune)")
    refuse_file_in_the_way(dirs["cache"], "tune.shared_cache_dir")
    best = dirs["best"]
    if best.is_dir():
        raise SearchError(f"tune.best_config: {best} is a folder: give the file the best trial's config is written "
                          f"to (e.g. {best / 'best.yaml'})")
    refuse_file_in_the_way(best.parent, "tune.best_config")


def check_resources(cfg: Config, ranks: Optional[int] = None) -> None:
    """Refuse, before Ray starts, a search whose trial could never be placed on the local instance it would start
    (Tune and Ray Train otherwise wait for the resources forever, silently). Not for a cluster (`tune.address`,
    RAY_ADDRESS), which may add nodes as trials wait. `ranks`: a trial that runs that many ranks in its own process
    (a study's row: one, `tuning.study`), not `tune.workers_per_trial` ranks in a worker group."""
    import ray

    t = cfg.tune
    if ray.is_initialized() or t.address or os.environ.get("RAY_ADDRESS"):
        return
    workers = t.workers_per_trial if ranks is None else ranks
    parts = [f"{workers} rank(s) x {t.cpus_per_trial:g} CPU"]
    cpus = workers * t.cpus_per_trial
    if ranks is None and t.worker_groups and not t.worker_pool:
        cpus += 1
        parts.insert(0, "1 for the trial process driving its TorchTrainer")
    have = {"CPU": float(t.num_cpus or os.cpu_count() or 1)}
    need = {"CPU": cpus}
    if t.gpus_per_trial > 0:
        import torch

        need["GPU"] = workers * t.gpus_per_trial
        have["GPU"] = float(torch.cuda.device_count())
    short = [k for k in need if need[k] > have[k] + 1e-9]
    if short:
        lower = "tune.workers_per_trial or tune.cpus_per_trial" if ranks is None else \
            "tune.cpus_per_trial" + (" or tune.gpus_per_trial" if "GPU" in short else "")
        raise SearchError(
            f"one trial needs {need['CPU']:g} CPU ({' + '.join(parts)})"
            + (f" and {need['GPU']:g} GPU" if "GPU" in need else "")
            + f", but the local Ray instance has {have['CPU']:g} CPU" + (f" and {have['GPU']:g} GPU" if "GPU" in have
                                                                          else "")
            + f" (tune.num_cpus, else this machine's count): lower {lower}, or "
              "raise tune.num_cpus (Ray may be told of more CPUs than the machine has)")
