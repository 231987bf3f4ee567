"""Typed config machinery: the `Section` base and YAML loading with dotted overrides (`core.explain` lists it).

Sections are pydantic models whose fields carry their documentation as attribute docstrings (the litgpt
style): `use_attribute_docstrings` turns each docstring into the field's description, which
`mmlnb-dist config explain` prints and a test checks is present on every field.

Nothing here knows which sections exist: the functions take the root model class (`mmlnb_dist.config.Config`
assembles it from the shared sections and each recipe's section).
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, Dict, Iterable, List, Literal, Optional, Sequence, Type, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from .errors import ConfigError
from .files import DuplicateKeyError, load_yaml, load_yaml_text, replace_text

__all__ = ["Section", "PathText", "ConfigError", "apply_overrides", "set_dotted", "field_annotation",
           "validate", "load", "to_yaml", "save_config", "flatten", "absolute_paths", "is_path_text"]

S = TypeVar("S", bound="Section")

_PATH_TEXT = "a str setting that may be a local path"
PathText = Annotated[str, _PATH_TEXT]
"""The type of a str setting that may name a local file or folder (a model name or its folder, a DeepSpeed JSON):
a leading `~` is the home folder, as in Path settings, and the value stays a str."""


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated, docstrings document fields, and
    float settings are finite numbers (`train.lr=inf` passed `gt=0` and trained to NaN at the first step)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True,
                              protected_namespaces=(), allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _expand_home(cls, value: Any, info: ValidationInfo) -> Any:
        """`~` at the start of a path setting is the home folder, in every section (recipes' too), from a file, an
        override or an assignment: nothing expanded it, and `data.synth_dir=~/x` made a folder named `~`."""
        field = cls.model_fields[info.field_name] if info.field_name is not None else None
        if isinstance(value, bool) and field is not None and _takes_only(field.annotation, (int, float)):
            raise ValueError("a number, not true/false")  # lax pydantic read `train.epochs=true` as 1 epoch
        if field is not None and is_path_text(field):
            return str(_expand(value)) if isinstance(value, str) else value
        if field is None or not _holds_paths(field.annotation):
            return value
        return [_expand(v) for v in value] if isinstance(value, list) else _expand(value)


def _holds_paths(annotation: Any) -> bool:
    """A Path field, an Optional one or a list of paths."""
    if annotation is Path:
        return True
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType or origin is list:
        return any(_holds_paths(a) for a in typing.get_args(annotation))
    return False


def is_path_text(field: Any) -> bool:
    """A `PathText` field (a pydantic FieldInfo), optional or not."""
    return _PATH_TEXT in field.metadata or _holds_path_text(field.annotation)


def _holds_path_text(annotation: Any) -> bool:
    """An Optional[PathText] (pydantic keeps the marker of a bare PathText in the field's metadata)."""
    if typing.get_origin(annotation) is Annotated:
        return _PATH_TEXT in typing.get_args(annotation)[1:]
    return any(_holds_path_text(a) for a in typing.get_args(annotation))


def _expand(value: Any) -> Any:
    if isinstance(value, (str, Path)) and str(value).startswith("~"):
        try:
            return Path(value).expanduser()
        except RuntimeError as err:  # no home folder known (HOME unset, no passwd entry): a ValueError names the key
            raise ValueError(f"'{value}': cannot expand '~' ({err})") from None
    return value


def _section_type(annotation: Any) -> Optional[type]:
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None


def known_keys(model: type, prefix: str = "") -> List[str]:
    """Every dotted key of `model` (for "did you mean" hints)."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        sub = _section_type(field.annotation)
        if sub is not None:
            keys.extend(known_keys(sub, prefix + name + "."))
    return keys


def _list_item(annotation: Any) -> Optional[Any]:
    """The item type of a `List[...]` field (curriculum phases, head widths), else None."""
    args = typing.get_args(annotation)
    return args[0] if typing.get_origin(annotation) is list and len(args) == 1 else None


def field_annotation(root: type, dotted: str) -> Any:
    """The annotation of the field `dotted` names (through sections, and list entries by index:
    `fusion.curriculum.phases.1.start_epoch`); `ConfigError` for a key that is not a field."""
    model: type = root
    parts = dotted.split(".")
    i = 0
    while True:
        part, fields = parts[i], model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            hint = _hint(root, dotted, known_keys(model, where + ".") if i else [])
            raise ConfigError(f"unknown config key '{dotted}': '{part}' is not a field of {where}{hint}")
        annotation = fields[part].annotation
        if i == len(parts) - 1:
            return annotation
        sub, item = _section_type(annotation), _list_item(annotation)
        if sub is not None:
            model, i = sub, i + 1
        elif item is not None:
            if not parts[i + 1].isdigit():
                raise ConfigError(f"config key '{dotted}': '{'.'.join(parts[:i + 1])}' is a list, and "
                                  f"'{parts[i + 1]}' is not an index (0, 1, ...)")
            if i + 1 == len(parts) - 1:
                return item  # a whole entry (a mapping for a list of sections)
            if _section_type(item) is None:
                raise ConfigError(f"config key '{dotted}': '{'.'.join(parts[:i + 2])}' is a value, not a section")
            model, i = item, i + 2
        else:
            raise ConfigError(f"config key '{dotted}': '{'.'.join(parts[:i + 1])}' is a value, not a section")


def _takes_only(annotation: Any, kinds: tuple) -> bool:
    """A field whose values are all `kinds` (bool is no number), a Literal of them, or an Optional/Union of those."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:  # Optional[PathText] keeps its Annotated inside the Union
        return _takes_only(typing.get_args(annotation)[0], kinds)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_takes_only(a, kinds) for a in args)
    if origin is Literal:
        return all(isinstance(a, kinds) and not isinstance(a, bool) for a in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, kinds) and not issubclass(annotation, bool)


def _is_optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in typing.get_args(annotation)


NULL_WORDS = ("~", "null", "Null", "NULL", "None")
"""YAML's spellings of null, and Python's None: they unset an Optional field (`tracking.register_name=null`)."""


def _parse_value(text: str, annotation: Any = None) -> Any:
    # A text field gets the text as typed (`run.name=2024`, `run.name=exp #1`, `vlm.prompt=Describe: the nuclei`):
    # read as YAML, a number or a boolean would be refused, `#` would start a comment, `: ` or braces a mapping.
    if _is_optional(annotation) and text.strip() in NULL_WORDS:  # unset (`None` was the text 'None': a folder None)
        return None
    if annotation is not None and _takes_only(annotation, (str, Path)):
        typed = text.strip()
        if len(typed) > 1 and typed[0] == typed[-1] and typed[0] in "\"'":  # quoted: YAML's quoting, unquoted
            with suppress(yaml.YAMLError):
                if isinstance(unquoted := load_yaml_text(typed), str):
                    return unquoted
        return typed or None  # nothing is unset too (a field that needs text refuses it)
    # Other fields are YAML, which gives the natural types: 3e-4 -> float, true -> bool, [a, b] -> list.
    try:
        value = load_yaml_text(text)
    except DuplicateKeyError:
        raise
    except yaml.YAMLError:
        return text
    # A (maybe Optional) list of names or numbers takes one item or the comma form, as the --classes flags do:
    # `data.classes=UD,PD,D`, `clip.model.head_widths=256,128`, `tracking.backends=mlflow`; each item as typed.
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if _is_optional(annotation) else []
    item = _list_item(args[0] if len(args) == 1 else annotation)
    if item is not None and _takes_only(item, (str, Path, int, float)) and value is not None \
            and not isinstance(value, (list, dict)):
        return [_parse_value(part, item) for part in (value.split(",") if isinstance(value, str) else [text])]
    return value


def apply_overrides(root: type, raw: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply `a.b.c=value` overrides to a raw (dict) config of model `root`; returns the same dict."""
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():  # `train.lr =3`: the shell makes `=3` an item
            raise ConfigError(f"override '{item}' is not of the form key=value (for example train.lr=3e-4, with no "
                              f"space before or after '=')")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            value = _parse_value(text, field_annotation(root, key))
        except DuplicateKeyError as err:
            raise ConfigError(f"override '{item}': the key {err.key!r} is written twice in one mapping (the second "
                              f"would silently replace the first; keep one)") from None
        set_dotted(root, raw, key, value, merge=True)
    return raw


def merge_into(node: Dict[str, Any], value: Dict[str, Any]) -> Dict[str, Any]:
    """`value`'s keys written into `node`, mappings merged at every depth, anything else (a list) replaced."""
    for k, v in value.items():
        if isinstance(v, dict) and isinstance(node.get(k), dict):
            merge_into(node[k], v)
        else:
            node[k] = v
    return node


def set_dotted(root: type, raw: Dict[str, Any], key: str, value: Any, merge: bool = False) -> None:
    """Set the dotted `key` of a raw (dict) config of model `root` to `value` (already typed): sections are created
    as needed, and a list entry (`fusion.curriculum.phases.1.start_epoch`) is reached by index in the dict's list,
    else in the field's default. With `merge`, a mapping `value` is merged into the mapping already there
    (`merge_into`): an override `data.loader={num_workers: 0}` changes one setting, not the whole section (which
    fell back to the defaults). `ConfigError` for a key that is no field or an index out of range."""
    field_annotation(root, key)
    node: Any = raw
    model: type = root
    parts = key.split(".")
    i = 0
    while i < len(parts) - 1:
        part = parts[i]
        sub = _section_type(model.model_fields[part].annotation)
        if sub is not None:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node, model, i = node[part], sub, i + 1
            continue
        # a list of sections (checked by _check_key): the dict's list, else the field's default, by index
        if not isinstance(node.get(part), list):
            default = model.model_fields[part].get_default(call_default_factory=True) or []
            node[part] = [e.model_dump(mode="json") if isinstance(e, BaseModel) else e for e in default]
        entries, index = node[part], int(parts[i + 1])
        if index >= len(entries):
            held = f"{len(entries)} entries (0-{len(entries) - 1})" if entries else "no entries"
            raise ConfigError(f"config key '{key}': '{'.'.join(parts[:i + 1])}' has {held}; index {index} is "
                              f"out of range")
        if i + 1 == len(parts) - 1:
            _put(entries, index, value, merge)
            return
        if not isinstance(entries[index], dict):
            entries[index] = {}
        node, model, i = entries[index], _list_item(model.model_fields[part].annotation), i + 2
    _put(node, parts[-1], value, merge)


def _put(container: Any, slot: Any, value: Any, merge: bool) -> None:
    """`container[slot] = value` (a dict's key or a list's index), or, with `merge`, a mapping merged into one."""
    held = container[slot] if isinstance(container, list) else container.get(slot)
    if merge and isinstance(value, dict) and isinstance(held, dict):
        merge_into(held, value)
    else:
        container[slot] = value


def _format_validation_error(root: type, err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        got = e.get("input")
        # a section's (or the root's) input is all its settings: too long to repeat; any other value, a mapping
        # too (`train.epochs={a: 1}`), is shown as it was read, so a value YAML read otherwise than meant is seen
        quiet = e["type"] == "extra_forbidden" or (isinstance(got, dict) and _names_section(root, e["loc"]))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(root, e["loc"])
        elif e["type"] == "model_type":  # `train=1`: pydantic named the section's class (TrainConfig)
            msg = f"a section: set its keys ({key}.KEY=VALUE), or give it a mapping"
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            msg = str(e["ctx"]["error"])  # the check's own words, without pydantic's "Value error, "
            named = _NAMED_KEY.match(msg)
            if named and (key == "(root)" or f"{named.group(1)}.".startswith(f"{key}.")):
                key, msg = named.group(1), msg[named.end():]  # it names its key (or one inside the section)
        lines.append(f"  {key}: {msg}{'' if quiet else f' (got {got!r})'}")
    return "\n".join(lines)


_NAMED_KEY = re.compile(r"([A-Za-z_]\w*(?:\.\w+)*): ")
"""A check's message that starts with the dotted key it is about: `train.best_metric: 'x' is not a metric ...`."""


def _did_you_mean(root: type, loc: Sequence[Any]) -> str:
    """A hint for the unknown key at `loc`: the closest field of the section (or list entry) holding it, else the
    closest key of the whole config (`known_keys` cannot list a list entry's fields, which need an index)."""
    key, parent = ".".join(str(p) for p in loc), ".".join(str(p) for p in loc[:-1])
    if "." in str(loc[-1]) and key in known_keys(root):  # `train.lr: 0.1`: the hint named what was written
        return ": a YAML file nests its keys (`a.b: 1` is `a:`, then `b: 1` indented under it)"
    try:
        holder = _section_type(field_annotation(root, parent)) if parent else root
    except ConfigError:
        holder = None
    return _hint(root, key, known_keys(holder, parent + "." if parent else "") if holder is not None else [])


def _hint(root: type, key: str, inner: List[str]) -> str:
    """Every key a bare name ends (`lr`: train.lr, vlm.lr), else the closest of `inner` (the keys of the section
    holding `key`), else of all; in any case (`train.LR` is `train.lr`, not the section `train`)."""
    key, every = key.lower(), known_keys(root)
    close = [k for k in every if "." not in key and k.endswith("." + key)] or \
        difflib.get_close_matches(key, inner, n=1) or difflib.get_close_matches(key, every, n=1)
    *head, last = map(repr, close or [""])
    return f"; did you mean {', '.join(head) + ' or ' if head else ''}{last}?" if close else ""


def _names_section(root: type, loc: Sequence[Any]) -> bool:
    """Whether an error's location is the root, a section or a list entry that is a section."""
    if not loc:
        return True
    try:
        return _section_type(field_annotation(root, ".".join(str(p) for p in loc))) is not None
    except ConfigError:  # a location pydantic extended (a union member's tag): a value
        return False


def validate(root: Type[S], raw: Dict[str, Any], source: str = "<dict>") -> S:
    """Validate a raw dict into `root`; a `ConfigError` lists every bad key with its reason."""
    try:
        return root.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(root, err, source)) from None


def load(root: Type[S], path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = ()) -> S:
    """Load a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    raw: Dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = load_yaml(path)
        except (yaml.YAMLError, UnicodeDecodeError) as err:  # an editor's cp1252, an image
            raise ConfigError(f"config file {path} cannot be read as YAML: {err}") from None
        if raw is None:  # a file saved before its settings were written would run as the defaults
            raise ConfigError(f"config file {path} holds no settings (it is empty or only comments); write them, "
                              f"or leave out --config for the defaults")
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        source = str(path)
    overrides = list(overrides)
    apply_overrides(root, raw, overrides)
    source += " + overrides " + " ".join(overrides) if overrides else ""
    return validate(root, raw, source)


def to_yaml(cfg: Section) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Section, path: Union[str, Path]) -> Path:
    """Write the resolved config as YAML (every run saves one beside its outputs); atomic."""
    path = Path(path)
    replace_text(path, to_yaml(cfg))
    return path


def flatten(cfg: Section) -> Dict[str, Any]:
    """The resolved config as {dotted.key: value} (MLflow params, search spaces)."""
    return flatten_dict(cfg.model_dump(mode="json"))


def flatten_dict(tree: Dict[str, Any]) -> Dict[str, Any]:
    """A nested dict (a config as saved in YAML) as {dotted.key: value}, as `flatten` gives a config's."""
    out: Dict[str, Any] = {}
    for k, v in tree.items():
        out.update({f"{k}.{kk}": vv for kk, vv in flatten_dict(v).items()} if isinstance(v, dict) else {k: v})
    return out


def absolute_paths(cfg: S, root: Path) -> S:
    """A copy of `cfg` whose relative paths (every `Path` field, also inside lists, and every `PathText` naming
    something under `root`, not a hub name) are made absolute against `root`: for processes that run elsewhere
    than where the config was written (a Ray trial runs in its own folder, on a cluster on another machine)."""
    def fix(value: Any, text: bool = False) -> Any:
        if isinstance(value, Path) and not value.is_absolute():
            return Path(root) / value
        if text and isinstance(value, str) and value and (Path(root) / value).exists():
            return str(Path(root) / value)
        if isinstance(value, Section):
            return absolute_paths(value, root)
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value
    update = {n: fix(getattr(cfg, n), is_path_text(f)) for n, f in type(cfg).model_fields.items()}
    return cfg.model_copy(update={k: v for k, v in update.items() if v is not getattr(cfg, k)})
