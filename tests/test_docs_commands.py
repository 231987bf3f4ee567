"""A new user copies commands from README.md and docs/*.md: every `mmlnb-dist COMMAND --flag` they show must be a flag
of that command, every dotted override (`train.lr=3e-4`) and every config key named on its own (`vlm.pairs`) a key of
the config, and every `--config NAME` a shipped profile. Checked in-process on the argparse parser and the config
model (well under a second), with the number of checked items asserted so that a broken extraction cannot pass."""
from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

from mmlnb_dist.cli import build_parser
from mmlnb_dist.config import Config, shipped_profiles
from mmlnb_dist.core.config import field_annotation
from mmlnb_dist.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _snippets():
    """(page, text) for every shell code block line and every inline code span of the docs."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for lang, body in FENCE.findall(text):
            if lang in ("", "bash", "sh", "console"):
                for line in body.replace("\\\n", " ").splitlines():
                    yield page.name, line
        for span in re.findall(r"`([^`]+)`", FENCE.sub("", text)):
            yield page.name, span.replace("\n", " ")


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _flags(parser):
    return {s for action in parser._actions for s in action.option_strings}


def _invocations():
    """(page, command words, the tokens after them, snippet) for each `mmlnb-dist ...` the docs show."""
    pattern = re.compile(r"mmlnb-dist((?:\s+--?\w[\w-]*)*)\s+([a-z][\w-]*)(.*?)(?=$|\||&&|;|mmlnb-dist)")
    for page, snippet in _snippets():
        for m in pattern.finditer(snippet):
            yield page, m.group(2), m.group(3).split(), snippet


def test_every_documented_flag_is_a_flag_of_its_command():
    commands = _subcommands(build_parser())
    checked, bad = 0, []
    for page, name, tokens, snippet in _invocations():
        if name not in commands:
            bad.append(f"{page}: unknown command '{name}' in `{snippet}`")
            continue
        parser = commands[name]
        nested = _subcommands(parser)
        if nested:
            if tokens and tokens[0] in nested:
                parser, tokens = nested[tokens[0]], tokens[1:]
            elif tokens and not tokens[0].startswith("-"):
                bad.append(f"{page}: unknown subcommand '{name} {tokens[0]}' in `{snippet}`")
                continue
        for token in tokens:
            flag = re.match(r"(--?[A-Za-z][\w-]*)", token)
            if flag:
                checked += 1
                if flag.group(1) not in _flags(parser):
                    bad.append(f"{page}: `mmlnb-dist {name}` has no {flag.group(1)} (in `{snippet}`)")
    assert not bad, "\n".join(bad)
    assert checked > 100, checked


def _python_object(dotted: str) -> bool:
    """`data.images.to_rgb` and the like name code (a module of the package and an attribute), not a config key."""
    parts = dotted.split(".")
    for base in ("mmlnb_dist", "mmlnb_dist.core", "mmlnb_dist.recipes"):
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join([base, *parts[:i]]))
            except ImportError:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
                return True
            except AttributeError:
                break
    return False


def _config_attribute(dotted: str) -> bool:
    """A derived value of the config (`run.dir`) rather than a field."""
    obj = Config()
    try:
        for attr in dotted.split("."):
            obj = getattr(obj, attr)
    except AttributeError:
        return False
    return True


def test_every_documented_override_and_config_key_exists():
    sections = set(Config.model_fields)
    overrides, keys, bad = 0, 0, []
    for page, snippet in _snippets():
        for key in re.findall(r"(?:^|\s)([a-z_]+(?:\.[A-Za-z_0-9]+)+)=", snippet):
            if key.split(".")[0] in sections:
                overrides += 1
                try:
                    field_annotation(Config, key)
                except ConfigError as err:
                    bad.append(f"{page}: override `{key}=`: {err}")
        key = snippet.strip()
        if (re.fullmatch(r"[a-z_]+(?:\.[a-z_0-9]+)+", key) and key.split(".")[0] in sections
                and not re.search(r"\.(py|csv|json|yaml|md|txt|db)$", key)):
            keys += 1
            try:
                field_annotation(Config, key)
            except ConfigError as err:
                if not (_config_attribute(key) or _python_object(key)):
                    bad.append(f"{page}: `{key}`: {err}")
    assert not bad, "\n".join(bad)
    assert overrides > 100 and keys > 100, (overrides, keys)


def test_every_documented_config_name_is_a_shipped_profile():
    names = [m for _, snippet in _snippets() for m in re.findall(r"--config\s+([\w./-]+)", snippet)]
    concrete = [n for n in names if "/" not in n or n.startswith("launch/profiles/")]
    concrete = [n for n in concrete if not n.isupper() and n not in ("...", "my.yaml")]
    unknown = sorted({n for n in concrete if Path(n).stem not in shipped_profiles()})
    assert not unknown, unknown
    assert len(concrete) > 20, concrete


def test_the_readme_names_every_config_section():
    """README's Configuration section lists the sections; the clip recipe's was missing from it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme.split("\nSections: ", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z]+)`", paragraph))
    assert set(Config.model_fields) <= named, sorted(set(Config.model_fields) - named)
