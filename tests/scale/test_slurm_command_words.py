"""train.sbatch's COMMAND is the mmlnb-dist subcommand, checked before any node starts: `COMMAND="features extract"`
(a two-word subcommand that runs on every rank, as docs/scaling.md lists it) reached every rank as the one word
'features extract' and each failed argparse's "invalid choice"; a misspelt COMMAND or option failed the same way on
every node of the allocation, after srun had started them all."""
from __future__ import annotations

from support.launch_wrappers import ROOT, fake_sbatch

FAKE_SRUN = "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > \"$FAKE_SLURM_LOG/srun.args\"\n"
PROFILE = str(ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml")


def _sbatch(tmp, command, *args):
    return fake_sbatch(tmp, FAKE_SRUN, args, COMMAND=command)


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
