"""Whether a VLM named in the config or on the command line can be loaded, checked before any output is claimed:
`tiny`, a local model folder, or a Hugging Face id that is in the cache (or downloadable). A model that is not
there was a traceback after `describe` had claimed its output with that model's provenance, so the rerun with the
right model was refused until `--restart`."""
from __future__ import annotations

from pathlib import Path

from ...core.errors import UserError
from ...models.encoders_base import hub_download_hint, require_hub_file
from .model import TINY


def _looks_like_a_path(name: str) -> bool:
    """A local path rather than a Hub id (`org/name`)."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def not_loadable(name: str, err: BaseException, key: str = "VLM") -> UserError:
    """The error for a model transformers could not load (not cached and no network, or no such repository)."""
    first = (str(err).strip().splitlines() or [""])[0][:200]
    return UserError(f"{key} '{name}' could not be loaded ({type(err).__name__}: {first}); "
                     f"{hub_download_hint(name)}, or give a local model folder")


def check_vlm_loadable(name: str, key: str = "VLM") -> None:
    """Raise a `UserError` naming `key` when `name` is neither `tiny`, an existing folder, nor a Hub id whose
    config can be fetched (from the cache, or the network when there is one). Reads one small file."""
    if name == TINY:
        return
    path = Path(name).expanduser()
    if _looks_like_a_path(name) and not path.is_dir():
        raise UserError(f"{key} '{name}': no such folder (a local model folder, a Hugging Face id such as "
                        f"Qwen/Qwen2.5-VL-7B-Instruct, or {TINY})")
    require_hub_file(str(path) if path.is_dir() else name, "config.json", lambda err: not_loadable(name, err, key))
