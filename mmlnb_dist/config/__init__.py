"""The root config: the shared sections plus one section per recipe of the recipe table.

    cfg = load_config("launch/profiles/cpu-demo.yaml", ["train.lr=3e-4", "run.name=exp1"])

Shared sections: `run`, `data`, `distributed`, `train`, `tracking`, `slides`, `tune`. Recipe sections (`fusion`,
`vlm`, ...) come from `mmlnb_dist.recipes.RECIPES`, so a new recipe adds its section without editing this file.
Every error names the dotted key and the reason (`ConfigError`), and is raised before any work starts.
"""
from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from pydantic import Field, create_model, model_validator

from ..core import config as machinery
from ..core import explain as explaining
from ..core.config import ConfigError, Section, flatten, save_config, to_yaml
from ..core.sections import DistributedConfig, LRScheduleConfig, RunConfig, TrackingConfig, TrainConfig
from ..data.config import BuildConfig, DataConfig, LoaderConfig, SynthConfig
from ..recipes import RECIPES
from ..slides.config import SlidesConfig
from .tune import TuneConfig, check_goal

__all__ = [
    "Config", "ConfigError", "Section", "load_config", "config_from_dict", "apply_overrides", "save_config",
    "to_yaml", "flatten", "explain", "RunConfig", "DataConfig", "SynthConfig", "BuildConfig", "LoaderConfig",
    "DistributedConfig", "TrainConfig", "LRScheduleConfig", "TrackingConfig", "SlidesConfig", "TuneConfig",
]


class SharedConfig(Section):
    """The sections every stage may read; `Config` adds each recipe's own section."""

    run: RunConfig = RunConfig()
    """Run folder, name, seed, resume."""

    data: DataConfig = DataConfig()
    """Synthetic data, shard building and the streaming loader."""

    distributed: DistributedConfig = DistributedConfig()
    """DeepSpeed and process-group settings."""

    train: TrainConfig = TrainConfig()
    """The training loop of the recipe `mmlnb-dist train` runs: epochs, batch, optimizer, lr schedule, cadence."""

    tracking: TrackingConfig = TrackingConfig()
    """Metric logging, MLflow and the model registry."""

    slides: SlidesConfig = SlidesConfig()
    """Whole-slide tiling."""

    tune: TuneConfig = TuneConfig()
    """Hyperparameter search."""

    @model_validator(mode="after")
    def _best_metric_is_a_recipe_metric(self) -> "SharedConfig":
        spec = RECIPES.get(self.train.recipe)
        if spec is None:
            raise ValueError(f"train.recipe: unknown recipe '{self.train.recipe}' (the recipe table has "
                             f"{', '.join(sorted(RECIPES))})")
        if self.train.best_metric not in spec.metrics:
            raise ValueError(f"train.best_metric: '{self.train.best_metric}' is not a metric of the "
                             f"{spec.name} recipe (choose one of {', '.join(spec.metrics)})")
        if "recipe" not in self.tune.model_fields_set:  # a CLIP config's search searches CLIP, on its own metric
            self.tune.recipe = spec.name
            if "metric" not in self.tune.model_fields_set:
                self.tune.metric = f"val/{self.train.best_metric}"
        check_goal(self)  # what a search optimises: a metric its trials report, in its own direction
        if self.tracking.register_metric is not None:  # else found only when training ends, then not registered
            check_register_metric(self.tracking.register_metric, spec)
        return self


Config = create_model(
    "Config",
    __base__=SharedConfig,
    __doc__="The whole configuration of a run: the shared sections and one section per recipe.",
    **{spec.section: (spec.config, Field(default_factory=spec.config, description=spec.description))
       for spec in RECIPES.values()},
)


def apply_overrides(raw: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply `a.b.c=value` overrides to a raw (dict) config; returns the same dict."""
    return machinery.apply_overrides(Config, raw, overrides)


def config_from_dict(raw: Dict[str, Any], source: str = "<dict>") -> Any:
    return machinery.validate(Config, raw, source)


PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
"""The shipped profiles (package data; `launch/profiles` links here in a source checkout)."""


def shipped_profiles() -> List[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def resolve_profile(path: Union[str, Path]) -> Path:
    """A config path as given, else a shipped profile by name (`cpu-demo`, `rtx4090.yaml`) or by its source
    checkout path (`launch/profiles/cpu-demo.yaml`), so commands work from any folder."""
    if not str(path).strip():  # `--config "$CONFIG"` with CONFIG unset: Path("") is the current folder
        raise ConfigError(f"--config is empty; give a YAML file or a shipped profile's name "
                          f"({', '.join(shipped_profiles())})")
    given = Path(path)
    with suppress(RuntimeError):  # `--config=~/cfg.yaml`: bash leaves that `~` to us, as path settings read it
        given = given.expanduser()
    if given.is_file():
        return given
    name = (given.stem if given.suffix in (".yaml", ".yml") else given.name) + ".yaml"  # shipped ones are .yaml
    shipped = PROFILES_DIR / name
    # before a folder of that name (a folder is never a config): `--config cpu-demo` from `runs/`, beside its run
    if shipped.is_file() and (len(given.parts) == 1 or given.parent.as_posix().endswith("launch/profiles")):
        return shipped
    if given.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a YAML file (e.g. {given / 'config.yaml'}) or a "
                          f"shipped profile's name ({', '.join(shipped_profiles())})")
    raise ConfigError(f"config file {path} not found (from {Path.cwd()}); shipped profiles: "
                      f"{', '.join(shipped_profiles())} (give a name, e.g. --config cpu-demo)")


def load_config(path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = ()) -> Any:
    """Load a YAML config (a path or a shipped profile's name; the defaults when None) and apply dotted
    overrides."""
    return machinery.load(Config, resolve_profile(path) if path is not None else None, overrides)


def explain(cfg: Optional[Config] = None, keys: Sequence[str] = (), origin: Optional[explaining.Origin] = None
            ) -> List[str]:
    """One line per key of the root config (only `keys` and their sections' when given): dotted key, value (`cfg`'s,
    with the default beside it where they differ and, with `origin` (`config_origin`), where it was set; the
    defaults when None), docstring."""
    return explaining.explain(Config, cfg, keys, origin)


def config_origin(path: Optional[Union[str, Path]], overrides: Iterable[str] = ()) -> explaining.Origin:
    """Where `load_config(path, overrides)`'s values come from, for `explain`: the file is named as given (a shipped
    profile by its name)."""
    from ..core.files import load_yaml

    raw = load_yaml(resolve_profile(path)) if path is not None else None
    return explaining.Origin(str(path) if path is not None else None, raw if isinstance(raw, dict) else None,
                             list(overrides))


def check_register_metric(metric: str, spec: Any) -> None:
    """`tracking.register_metric` is `[best/]val/<metric>` or `[best/]test/<metric>` of the training recipe: a typo
    used to be found when training ended, and the finished run was left unregistered. `ValueError`s."""
    import difflib

    choices = [f"{best}{split}/{name}" for best in ("best/", "") for split in ("val", "test") for name in spec.metrics]
    if metric in choices:
        return
    close = difflib.get_close_matches(metric, choices, n=1, cutoff=0.6)
    raise ValueError(f"tracking.register_metric: '{metric}' is not a metric the {spec.name} recipe logs"
                     + (f"; did you mean '{close[0]}'?" if close else "")
                     + f" (the form is [best/]val/<metric> or [best/]test/<metric>, <metric> one of "
                       f"{', '.join(spec.metrics)})")
