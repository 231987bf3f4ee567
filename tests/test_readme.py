"""The README is the entry point: its set-up section comes once (an edit had left a stale second copy with the old
ablation numbers), and CI runs exactly the test command it gives."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_readme_heading_comes_once():
    headings = re.findall(r"^#+ .+$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    repeated = [h for h, n in Counter(headings).items() if n > 1]
    assert not repeated, f"README.md repeats {repeated}"


def test_ci_runs_the_readme_test_command_and_the_readme_gives_the_main_job():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", setup, re.S)
    assert commands[:2] == ["bash launch/install.sh && .venv/bin/mmlnb-dist demo",
                            "bash launch/install.sh --test && .venv/bin/python -m pytest -q -n 2 --dist worksteal tests"], commands
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == commands[1], ci
