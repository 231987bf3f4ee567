"""The recipe protocol and the one `run()` that the CLI, the pipeline, Tune trials and tests all call.

A recipe is a class, one instance per run and process (in the spirit of torchtune's recipe interface):

    class MyRecipe:
        name = "my-recipe"                      # tags, logs
        def __init__(self, cfg, env, report=None): ...
        def setup(self) -> None: ...            # data, model, engine, logger; resume when cfg.run.resume
        def train(self) -> dict: ...            # the loop; returns run_dir and the final metrics
        def evaluate(self, split: str) -> dict: ...
        def save_checkpoint(self) -> None: ...
        def cleanup(self, status: str) -> None: ...   # FINISHED, FAILED or KILLED
        @classmethod
        def check(cls, cfg, env) -> None: ...   # optional: config problems found before any work

`report(step_or_epoch, metrics)` is optional; Ray Tune trials report through it, on every rank.
The recipe table (`mmlnb_dist/recipes/__init__.py`) names every recipe; `core` knows none of them.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Protocol, Type

from .distributed import DistEnv, init_engine_process_group
from .logging import setup_logging

Report = Callable[[int, Dict[str, float]], None]


class Recipe(Protocol):
    name: str

    def __init__(self, cfg: Any, env: DistEnv, report: Optional[Report] = None) -> None: ...
    def setup(self) -> None: ...
    def train(self) -> Dict[str, Any]: ...
    def evaluate(self, split: str) -> Dict[str, Any]: ...
    def save_checkpoint(self) -> Any: ...
    def cleanup(self, status: str = "FINISHED") -> None: ...


def run(recipe_cls: Type[Recipe], cfg: Any, env: Optional[DistEnv] = None,
        report: Optional[Report] = None) -> Dict[str, Any]:
    """Check the config, create the process group, then setup -> train -> cleanup; returns train's result.

    The process group lives as long as the process: DeepSpeed caches its groups at module level, so a group
    destroyed here would break the next engine built in the same process (the demo pipeline, a Tune trial).
    """
    env = env or DistEnv.from_environment()
    setup_logging(env.rank)
    check = getattr(recipe_cls, "check", None)
    if check is not None:
        check(cfg, env)
    init_engine_process_group(env, cfg.distributed)
    recipe = recipe_cls(cfg, env, report)
    status = "FAILED"
    try:
        recipe.setup()
        result = recipe.train()
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        recipe.cleanup(status)
