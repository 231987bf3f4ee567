"""Typed configuration: one root model of sections, loaded from YAML with dotted overrides.

    cfg = load_config("launch/profiles/cpu-demo.yaml", ["train.lr=3e-4", "run.name=exp1"])

Every error names the key and the reason (`ConfigError`), and is raised before any work starts.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import yaml
from pydantic import ValidationError

from .base import Section
from .data import BuildConfig, DataConfig, LoaderConfig, SynthConfig
from .distributed import DistributedConfig
from .model import FusionConfig, ImageEncoderConfig, ModelConfig, TextEncoderConfig
from .run import RunConfig
from .slides import SlidesConfig
from .tracking import TrackingConfig
from .train import CurriculumConfig, PhaseConfig, TrainConfig
from .tune import TuneConfig
from .vlm import GenerationConfig, LoraConfig, VLMConfig

__all__ = [
    "Config", "ConfigError", "load_config", "apply_overrides", "save_config", "explain",
    "RunConfig", "DataConfig", "SynthConfig", "BuildConfig", "LoaderConfig", "ModelConfig",
    "ImageEncoderConfig", "TextEncoderConfig", "FusionConfig", "TrainConfig", "CurriculumConfig",
    "PhaseConfig", "DistributedConfig", "VLMConfig", "LoraConfig", "GenerationConfig",
    "TrackingConfig", "SlidesConfig", "TuneConfig",
]


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid; the message names the dotted key."""


class Config(Section):
    """The whole configuration of a run. Each stage reads the sections it needs."""

    run: RunConfig = RunConfig()
    """Run folder, name, seed, resume."""

    data: DataConfig = DataConfig()
    """Synthetic data, shard building and the streaming loader."""

    model: ModelConfig = ModelConfig()
    """The dual-branch classifier."""

    train: TrainConfig = TrainConfig()
    """Stage 2 training."""

    distributed: DistributedConfig = DistributedConfig()
    """DeepSpeed and process-group settings."""

    vlm: VLMConfig = VLMConfig()
    """Stage 1: description VLM."""

    tracking: TrackingConfig = TrackingConfig()
    """Metric logging and MLflow."""

    slides: SlidesConfig = SlidesConfig()
    """Whole-slide tiling."""

    tune: TuneConfig = TuneConfig()
    """Hyperparameter search."""


def _parse_value(text: str) -> Any:
    # YAML gives the natural types: 3e-4 -> float, true -> bool, [a, b] -> list, null -> None.
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _known_keys(model: type, prefix: str = "") -> List[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            keys.extend(_known_keys(ann, prefix + name + "."))
    return keys


def _check_key(dotted: str) -> None:
    model: type = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            close = difflib.get_close_matches(dotted, _known_keys(Config), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{dotted}': '{part}' is not a field of {where}{hint}")
        ann = fields[part].annotation
        if i < len(parts) - 1:
            if not (isinstance(ann, type) and issubclass(ann, Section)):
                raise ConfigError(f"config key '{dotted}': '{'.'.join(parts[:i + 1])}' is a value, not a section")
            model = ann


def apply_overrides(raw: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply `a.b.c=value` overrides to a raw (dict) config; returns the same dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (for example train.lr=3e-4)")
        key, text = item.split("=", 1)
        key = key.strip()
        _check_key(key)
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _parse_value(text)
    return raw


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        got = e.get("input")
        got_text = "" if isinstance(got, dict) or e["type"] == "extra_forbidden" else f" (got {got!r})"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, _known_keys(Config), n=1)
            msg = "unknown key" + (f"; did you mean '{close[0]}'?" if close else "")
        lines.append(f"  {key}: {msg}{got_text}")
    return "\n".join(lines)


def config_from_dict(raw: Dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    raw: Dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        source = str(path)
    overrides = list(overrides)
    apply_overrides(raw, overrides)
    if overrides:
        source += " + overrides " + " ".join(overrides)
    return config_from_dict(raw, source)


def to_yaml(cfg: Section) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Section, path: Union[str, Path]) -> Path:
    """Write the resolved config as YAML (every run saves one beside its outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg))
    return path


def flatten(cfg: Section) -> Dict[str, Any]:
    """The resolved config as {dotted.key: value} (MLflow params, search spaces)."""
    out: Dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(cfg.model_dump(mode="json"), "")
    return out


def explain(model: type = Config, prefix: str = "") -> List[str]:
    """One line per field: dotted key, type default, docstring (for `mmlnb-dist config explain`)."""
    lines = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        key = prefix + name
        if isinstance(ann, type) and issubclass(ann, Section):
            lines.append(f"{key}:  # {field.description or ''}")
            lines.extend(explain(ann, key + "."))
        else:
            default = field.get_default(call_default_factory=True)
            lines.append(f"{key} = {default!r}  # {field.description or ''}")
    return lines
