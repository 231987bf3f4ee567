"""train.sbatch's COMMAND is the mmlnb-dist subcommand, checked before any node starts: `COMMAND="features extract"`
(a two-word subcommand that runs on every rank, as docs/scaling.md lists it) reached every rank as the one word
'features extract' and each failed argparse's "invalid choice"; a misspelt COMMAND or option failed the same way on
every node of the allocation, after srun had started them all."""
from __future__ import annotations

import os
import subprocess

from support.launch_wrappers import REAL_PYTHON, ROOT

FAKE_SRUN = "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > \"$FAKE_SLURM_LOG/srun.args\"\n"
PROFILE = str(ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml")


def _sbatch(tmp, command, *args):
    (tmp / "srun").write_text(FAKE_SRUN)
    (tmp / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "PYTHON", "LAUNCHER", "GPUS_PER_NODE", "COMMAND")}
    env.update(PATH=f"{tmp}:{env['PATH']}", PYTHONPATH=str(ROOT), PYTHON=str(REAL_PYTHON), FAKE_SLURM_LOG=str(tmp),
               SLURM_JOB_NODELIST="node1,node2", SLURM_JOB_NUM_NODES="2", SLURM_SUBMIT_DIR=str(ROOT),
               SLURM_GPUS_ON_NODE="1", COMMAND=command)
    return subprocess.run(["bash", str(ROOT / "launch" / "slurm" / "train.sbatch"), *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_two_word_command_reaches_the_ranks_as_two_words(tmp_path):
    done = _sbatch(tmp_path, "features extract", "cpu-demo", "--out", "feats", "run.name=a")
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "srun.args").read_text().splitlines()
    at = argv.index("mmlnb_dist.cli")
    assert argv[at + 1:] == ["features", "extract", "--config", PROFILE, "--out", "feats", "run.name=a"], argv


def test_a_misspelt_command_is_refused_before_srun(tmp_path):
    done = _sbatch(tmp_path, "trian", "cpu-demo", "run.name=a")
    assert done.returncode == 2 and not (tmp_path / "srun.args").exists(), done.stderr
    assert "invalid choice: 'trian'" in done.stderr and "COMMAND=trian" in done.stderr, done.stderr


def test_an_unknown_option_is_refused_before_srun(tmp_path):
    done = _sbatch(tmp_path, "describe", "cpu-demo", "--shrads", "s", "--out", "o")
    assert done.returncode == 2 and not (tmp_path / "srun.args").exists(), done.stderr
    assert "unrecognized arguments: --shrads" in done.stderr, done.stderr
