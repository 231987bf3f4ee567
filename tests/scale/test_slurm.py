"""launch/slurm/train.sbatch run outside Slurm with a simulated 2-node allocation: a fake `scontrol` that expands
the node list and a fake `srun` that starts the per-node command once per node (SLURM_NODEID / SLURM_PROCID set),
both put first on PATH. The torchrun mode trains for real (world size 2 on this machine); the DeepSpeed mode is
checked up to its command line and hostfile (the launcher itself would ssh to the nodes), read back with
DeepSpeed's own parsers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from mmlnb_dist.core.tracking.server import free_port

from support.fusion import CPU_DEMO, ROOT, make_shards
from support.processes import wait_until

SBATCH = ROOT / "launch" / "slurm" / "train.sbatch"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

# srun: skip srun's own options (--nodes N: N tasks, default every node of the allocation), then start the command
# once per task, in the background, with the variables Slurm gives each task, each in a process group of its own
# whose id goes to $FAKE_SLURM_LOG/steps (Slurm's `--signal` without `B:` signals every process of the job steps,
# not the batch shell: the test does the same with these groups); exit with the first failing task's code.
FAKE_SRUN = r"""#!/usr/bin/env bash
echo "$@" > "$FAKE_SLURM_LOG/srun.args"
echo "${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-unset}" > "$FAKE_SLURM_LOG/shutdown_timeout"
tasks=$SLURM_JOB_NUM_NODES
while [[ $# -gt 0 && "$1" == -* ]]; do
  case "$1" in --nodes|-N) tasks=$2; shift 2 ;; --*=*) shift ;; *) shift 2 ;; esac
done
pids=()
for ((node = 0; node < tasks; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 SLURM_STEP_ID=0 setsid "$@" &
  pids+=($!)
  echo $! >> "$FAKE_SLURM_LOG/steps"
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || { code=$?; [[ $rc -ne 0 ]] || rc=$code; }; done
exit $rc
"""
# scontrol show hostnames LIST: the hostnames in $FAKE_HOSTNAMES (space-separated), one per line.
FAKE_SCONTROL = r"""#!/usr/bin/env bash
[[ "$1 $2" == "show hostnames" ]] || { echo "fake scontrol: unexpected $*" >&2; exit 1; }
printf '%s\n' $FAKE_HOSTNAMES
"""
# deepspeed: record the command line (one argument a line) instead of starting anything; with FAKE_DEEPSPEED_WAIT
# set, then wait to be signalled (as a launcher whose ranks train) and record the signal.
FAKE_DEEPSPEED = r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "$FAKE_SLURM_LOG/deepspeed.args"
if [[ -n "${FAKE_DEEPSPEED_WAIT:-}" ]]; then
  trap 'echo TERM >> "$FAKE_SLURM_LOG/deepspeed.signals"; exit 1' TERM
  touch "$FAKE_SLURM_LOG/deepspeed.started"
  for ((i = 0; i < 1200; i++)); do sleep 0.1; done  # the bound only ends an orphan; nothing waits for it
fi
"""


def _fake_bin(tmp: Path, scontrol: bool = True) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    tools = {"srun": FAKE_SRUN, "deepspeed": FAKE_DEEPSPEED, **({"scontrol": FAKE_SCONTROL} if scontrol else {})}
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _slurm_env(tmp: Path, hostnames: str, nodelist: str, scontrol: bool = True, **extra: str) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    for key in [k for k in env if k.startswith("SLURM_")] + ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT", "GPUS_PER_NODE", "LAUNCHER", "HOSTFILE"]:
        env.pop(key, None)
    # Without scontrol only the system folders stay on PATH (a real scontrol there must not be found either).
    path = f"{_fake_bin(tmp, scontrol)}:{env['PATH'] if scontrol else '/usr/bin:/bin'}"
    env.update(PATH=path, FAKE_SLURM_LOG=str(tmp), FAKE_HOSTNAMES=hostnames, SLURM_JOB_NODELIST=nodelist,
               SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="4242", SLURM_SUBMIT_DIR=str(ROOT), PYTHON=PY,
               DEEPSPEED=str(tmp / "bin" / "deepspeed"), MASTER_PORT=str(free_port()), **extra)
    return env


def _sbatch(env: Dict[str, str], args: List[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SBATCH), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_script_asks_slurm_for_one_task_per_node():
    directives = [line for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --ntasks-per-node=1" in directives


@pytest.mark.slow
def test_torchrun_mode_trains_with_world_size_two(tmp_path):
    """Two simulated nodes (`localhost` twice), one GPU slot each: srun starts one torchrun per node, they meet at
    the c10d rendezvous on the first node and train the fusion classifier for one epoch with world size 2."""
    shards = make_shards(tmp_path, n=120, size=64)
    env = _slurm_env(tmp_path, "localhost localhost", "node[1-2]", SLURM_GPUS_ON_NODE="1")
    proc = _sbatch(env, [str(CPU_DEMO), f"data.shards={shards}", f"run.output_dir={tmp_path / 'runs'}",
                         "run.name=slurm", "tracking.backends=[stdout]", "data.loader.num_workers=0",
                         "data.loader.image_size=64", "train.epochs=1"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    srun_args = (tmp_path / "srun.args").read_text().split()
    assert srun_args[:7] == ["--nodes", "2", "--ntasks", "2", "--ntasks-per-node", "1", "--kill-on-bad-exit=1"]
    # torchrun lets the ranks finish their step and checkpoint after a SIGTERM (its default kills them at 30 s)
    assert (tmp_path / "shutdown_timeout").read_text().strip() == "110"
    assert "world 2; global batch 32 = micro 16 x accumulation 1 x world 2" in proc.stderr + proc.stdout
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result["run_dir"] == str(tmp_path / "runs" / "slurm") and result["val/num_samples"] == 30
    ds = json.loads((tmp_path / "runs" / "slurm" / "deepspeed_config.json").read_text())
    assert ds["train_batch_size"] == 32 and ds["train_micro_batch_size_per_gpu"] == 16
    assert (tmp_path / "runs" / "slurm" / "export" / "model.safetensors").is_file()


def _deepspeed_call(tmp: Path, env: Dict[str, str]) -> List[str]:
    proc = _sbatch(env, [str(CPU_DEMO), "data.shards=/shared/shards", "run.name=ds"], timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return (tmp / "deepspeed.args").read_text().splitlines()


def test_deepspeed_mode_writes_the_hostfile_and_calls_the_launcher(tmp_path):
    from deepspeed.launcher.runner import fetch_hostfile, parse_args

    hostfile = tmp_path / "hosts"
    env = _slurm_env(tmp_path, "gpu-a gpu-b", "gpu-[a-b]", LAUNCHER="deepspeed", SLURM_GPUS_PER_NODE="a100:4",
                     HOSTFILE=str(hostfile))
    argv = _deepspeed_call(tmp_path, env)
    assert fetch_hostfile(str(hostfile)) == {"gpu-a": 4, "gpu-b": 4}  # DeepSpeed's own hostfile parser
    ds = parse_args(argv)  # the DeepSpeed launcher's own argument parser
    assert (ds.hostfile, ds.master_addr, ds.master_port) == (str(hostfile), "gpu-a", int(env["MASTER_PORT"]))
    assert (ds.num_nodes, ds.num_gpus, ds.no_local_rank, ds.module) == (2, 4, True, True)
    assert [ds.user_script, *ds.user_args] == ["mmlnb_dist.cli", "train", "--config", str(CPU_DEMO),
                                                "data.shards=/shared/shards", "run.name=ds"]


def test_without_scontrol_a_plain_node_list_is_split(tmp_path):
    hostfile = tmp_path / "hosts"
    env = _slurm_env(tmp_path, "", "alpha,beta", scontrol=False, LAUNCHER="deepspeed", SLURM_GPUS_ON_NODE="2",
                     HOSTFILE=str(hostfile))
    argv = _deepspeed_call(tmp_path, env)
    assert hostfile.read_text() == "alpha slots=2\nbeta slots=2\n"
    assert argv[argv.index("--master_addr") + 1] == "alpha"


def test_without_scontrol_a_compressed_node_list_is_refused(tmp_path):
    env = _slurm_env(tmp_path, "", "node[1-2]", scontrol=False, LAUNCHER="deepspeed")
    proc = _sbatch(env, [str(CPU_DEMO)], timeout=60)
    assert proc.returncode == 2 and not (tmp_path / "deepspeed.args").exists()
    assert "scontrol is not on PATH" in proc.stderr and "node[1-2]" in proc.stderr


@pytest.mark.parametrize("restart, given, command, added", [
    ("1", [], "train", True),
    ("0", [], "train", False),
    ("2", ["run.resume=true"], "train", False),
    ("1", [], "finetune-vlm", True),
    # the subcommand's first word decides, not the whole COMMAND string (a trailing space, or an option with it)
    ("1", [], "train ", True),
    ("1", [], "finetune-vlm --name-after-fusion-run", True),
], ids=["requeued", "first-start", "already-asked", "finetune-vlm", "train-trailing-space", "finetune-vlm-option"])
def test_a_requeued_job_resumes_its_run(tmp_path, restart, given, command, added):
    """`sbatch --requeue` (preemption, a node failure) starts the same script with the same arguments again: the
    training refused the folder holding the first start's checkpoints ("pass run.resume=true") and the requeued
    job failed at once. A restarted job (SLURM_RESTART_COUNT > 0) now resumes its run."""
    env = _slurm_env(tmp_path, "gpu-a gpu-b", "gpu-[a-b]", LAUNCHER="deepspeed", SLURM_GPUS_PER_NODE="4",
                     HOSTFILE=str(tmp_path / "hosts"), SLURM_RESTART_COUNT=restart, COMMAND=command)
    proc = _sbatch(env, [str(CPU_DEMO), "data.shards=/shared/shards", "run.name=ds", *given], timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    argv = (tmp_path / "deepspeed.args").read_text().splitlines()
    assert argv.count("run.resume=true") == (1 if added or given else 0), argv
    assert ("requeued (restart" in proc.stderr) == added, proc.stderr


def test_a_shipped_profile_is_given_by_its_name_as_to_mmlnb_dist(tmp_path):
    """`--config rtx4090` works from any folder for mmlnb-dist; the script refused it ("config rtx4090 not found")."""
    from deepspeed.launcher.runner import parse_args

    env = _slurm_env(tmp_path, "gpu-a gpu-b", "gpu-[a-b]", LAUNCHER="deepspeed", SLURM_GPUS_ON_NODE="1",
                     HOSTFILE=str(tmp_path / "hosts"))
    proc = _sbatch(env, ["rtx4090", "data.shards=/shared/shards"], timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ds = parse_args((tmp_path / "deepspeed.args").read_text().splitlines())
    config = ds.user_args[ds.user_args.index("--config") + 1]
    assert Path(config).is_absolute()
    assert Path(config).read_text() == (ROOT / "launch/profiles/rtx4090.yaml").read_text()


def test_a_config_that_is_neither_a_file_nor_a_profile_is_refused_before_any_launch(tmp_path):
    env = _slurm_env(tmp_path, "gpu-a gpu-b", "gpu-[a-b]", LAUNCHER="deepspeed", SLURM_GPUS_ON_NODE="1",
                     HOSTFILE=str(tmp_path / "hosts"))
    proc = _sbatch(env, ["rtx4909", "data.shards=/shared/shards"], timeout=60)
    assert proc.returncode == 2
    assert "rtx4909" in proc.stderr and "shipped profiles" in proc.stderr and "rtx4090" in proc.stderr, proc.stderr
    assert not (tmp_path / "deepspeed.args").exists()


def test_the_early_sigterm_reaches_the_deepspeed_launcher(tmp_path):
    """`#SBATCH --signal=TERM@120` (no `B:`) signals the processes of the job steps only, never the batch shell. The
    DeepSpeed mode exec'd the launcher in the batch shell (no step): nothing got the early SIGTERM, no rank
    checkpointed before the time limit's SIGKILL. The launcher now runs as a one-task step on the first node; the
    batch script then gives the other nodes' ranks the time DeepSpeed's launcher gives them to save the step."""
    import signal

    directive = [line.split("=", 1)[1] for line in SBATCH.read_text().splitlines()
                 if line.startswith("#SBATCH --signal=")]
    assert len(directive) == 1, directive
    env = _slurm_env(tmp_path, "gpu-a gpu-b", "gpu-[a-b]", LAUNCHER="deepspeed", SLURM_GPUS_ON_NODE="1",
                     HOSTFILE=str(tmp_path / "hosts"), FAKE_DEEPSPEED_WAIT="1", DEEPSPEED_STOP_GRACE_S="1")
    batch = subprocess.Popen(["bash", str(SBATCH), str(CPU_DEMO), "data.shards=/shared/shards"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until((tmp_path / "deepspeed.started").exists, batch, "starting the launcher", batch.stderr.read)
        # what Slurm signals at TERM@120: B: the batch shell only; else every process of every job step
        if directive[0].startswith("B:"):
            os.kill(batch.pid, signal.SIGTERM)
        else:
            steps = (tmp_path / "steps").read_text().split() if (tmp_path / "steps").exists() else []
            for pgid in steps:
                os.killpg(int(pgid), signal.SIGTERM)
        try:
            out, err = batch.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("the launcher never got the SIGTERM: the batch script still runs") from None
        assert (tmp_path / "deepspeed.signals").read_text().split() == ["TERM"]
        srun_args = (tmp_path / "srun.args").read_text().split()
        assert srun_args[:4] == ["--nodes", "1", "--ntasks", "1"], srun_args  # the launcher alone, once
        assert srun_args[srun_args.index("--nodelist") + 1] == "gpu-a"  # on the first node, the master
        assert batch.returncode == 1, err[-3000:]  # the launcher's code
        assert "waiting 1 s" in err, err[-3000:]
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait()
        for pgid in ((tmp_path / "steps").read_text().split() if (tmp_path / "steps").exists() else []):
            try:
                os.killpg(int(pgid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_grace_written_with_a_leading_zero_is_waited(tmp_path):
    """DEEPSPEED_STOP_GRACE_S=05 passed the check (digits) and then failed bash's arithmetic (08: "value too great
    for base", 05 read as octal): the wait was skipped without a word, and the job's end killed the ranks saving
    their step. It is read as the decimal it says, like a hostfile's slots=08. `sleep` is a fake that records."""
    env = _slurm_env(tmp_path, "gpu-a gpu-b", "gpu-[a-b]", LAUNCHER="deepspeed", SLURM_GPUS_ON_NODE="1",
                     HOSTFILE=str(tmp_path / "hosts"), DEEPSPEED_STOP_GRACE_S="08")
    for name, text in {"failing-deepspeed": "#!/usr/bin/env bash\nexit 1\n",
                       "sleep": '#!/usr/bin/env bash\necho "$@" >> "$FAKE_SLURM_LOG/sleeps"\n'}.items():
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    env["DEEPSPEED"] = str(tmp_path / "bin" / "failing-deepspeed")
    proc = _sbatch(env, [str(CPU_DEMO), "data.shards=/shared/shards"], timeout=60)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "waiting 8 s" in proc.stderr, proc.stderr[-3000:]
    assert (tmp_path / "sleeps").read_text().split() == ["8"]


@pytest.mark.parametrize("name, named_after_fusion", [(None, True), ("run.name=my-vlm", False)])
def test_a_finetune_vlm_job_is_named_beside_the_fusion_run_as_by_the_wrapper(tmp_path, name, named_after_fusion):
    """`COMMAND=finetune-vlm sbatch ... CONFIG` without run.name=... fine-tuned into runs/<run.name>, the folder the
    fusion `train` job of the same config writes (the second job refused, or lost, its folder); the job now names its
    run `<run.name>-vlm`, as launch/finetune_vlm.sh and the pipeline do, unless a run.name is given."""
    from deepspeed.launcher.runner import parse_args

    env = _slurm_env(tmp_path, "gpu-a gpu-b", "gpu-[a-b]", LAUNCHER="deepspeed", SLURM_GPUS_ON_NODE="1",
                     HOSTFILE=str(tmp_path / "hosts"), COMMAND="finetune-vlm")
    proc = _sbatch(env, [str(CPU_DEMO), "vlm.pairs=/shared/pairs", *([name] if name else [])], timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ds = parse_args((tmp_path / "deepspeed.args").read_text().splitlines())
    assert ds.user_args[:3] == ["finetune-vlm", "--config", str(CPU_DEMO)]
    assert ("--name-after-fusion-run" in ds.user_args) == named_after_fusion, ds.user_args
