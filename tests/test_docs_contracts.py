"""docs/CONTRACTS.md is what a contributor reads before adding a recipe: it must name every recipe of the table
(its config section and its entry under "Recipes shipped") and every field of a table row. The page had stayed at
the first two recipes: the clip recipe, and RecipeSpec's `shard_task`, were missing from it."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from mmlnb_dist.recipes import RECIPES, RecipeSpec

CONTRACTS = (Path(__file__).resolve().parents[1] / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")


def test_every_recipe_of_the_table_has_its_section_and_its_shipped_entry():
    assert len(RECIPES) >= 3, sorted(RECIPES)
    sections = CONTRACTS.split("- Recipe sections:", 1)[1].split("\n- ", 1)[0]
    shipped = CONTRACTS.split("## Recipes shipped", 1)[1].split("\n## ", 1)[0]
    for name, spec in RECIPES.items():
        assert f"`{spec.section}:`" in sections, f"CONTRACTS.md's recipe sections leave out `{spec.section}:`"
        assert re.search(rf"^- `{name}` \(`recipes/{name}/`\)", shipped, re.M), \
            f"CONTRACTS.md's 'Recipes shipped' leaves out {name}"


def test_the_recipe_table_row_lists_every_recipespec_field():
    signature = re.search(r"`RecipeSpec\(([^`]*)\)`", CONTRACTS)
    assert signature, "CONTRACTS.md no longer shows RecipeSpec(...)"
    listed = [re.split(r"[=\s]", part.strip())[0] for part in signature.group(1).split(",")]
    fields = [f.name for f in dataclasses.fields(RecipeSpec)]
    assert len(fields) >= 10, fields
    assert listed == fields, (listed, fields)
