"""The launch/ wrappers run from any folder, and the paths a user passes them are relative to that folder, as for
`mmlnb-dist` itself. They used to `cd` into the checkout first (train_*.sh: `data.shards=shards/nb` given in a
project folder was looked up in the checkout, and `runs/` was written there) or to need the checkout as the
current folder (describe.sh, finetune_vlm.sh: "config file not found: launch/profiles/rtx4090.yaml" and
"No module named mmlnb_dist" from the python on PATH). Each wrapper here is run from a fresh folder holding an
`empty/` folder that is no shard set: the command's own error about `empty/manifest.json` shows that it found its
config and interpreter and read the path in the caller's folder."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support.fusion import ROOT
from support.processes import wait_until

LAUNCH = ROOT / "launch"


def run_wrapper(script: str, args, cwd: Path, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CONFIG", "PROFILE", "HOSTFILE")}
    environ.update(env)
    return subprocess.run(["bash", str(LAUNCH / script), *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def elsewhere(tmp_path):
    """A project folder outside the checkout with a folder `empty/` in it (no manifest.json)."""
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("script, args", [
    ("train_single_4090.sh", ["data.shards=empty"]),
    # through the DeepSpeed launcher, which also used to pass --local_rank, an argument mmlnb-dist refuses
    ("train_node.sh", ["data.shards=empty"]),
    ("finetune_vlm.sh", ["vlm.model=tiny", "vlm.pairs=empty"]),
])
def test_a_wrapper_reads_relative_paths_in_the_folder_it_is_run_from(script, args, elsewhere):
    done = run_wrapper(script, args, elsewhere, NUM_GPUS="1")
    assert done.returncode == 2, done.stderr
    assert "empty/manifest.json not found" in done.stderr, done.stderr


def test_describe_finds_its_config_and_interpreter_from_any_folder(elsewhere):
    done = run_wrapper("describe.sh", ["--adapter", "empty", "--shards", "empty", "--out", "described"], elsewhere)
    assert done.returncode == 2, done.stderr
    assert "mmlnb-dist describe: error: --adapter empty: no adapter_config.json" in done.stderr, done.stderr
    assert not (elsewhere / "described").exists()


def test_an_interpreter_without_the_package_is_named_with_the_remedy(elsewhere):
    done = run_wrapper("train_single_4090.sh", ["data.shards=empty"], elsewhere, PYTHON="/usr/bin/env")
    assert done.returncode == 2
    assert "cannot import mmlnb_dist" in done.stderr and "install.sh" in done.stderr, done.stderr


def test_train_multinode_without_a_hostfile_says_which_file_it_looked_for(elsewhere):
    done = run_wrapper("train_multinode.sh", ["data.shards=empty"], elsewhere, HOSTFILE="hosts")
    assert done.returncode == 2
    assert "hostfile hosts not found" in done.stderr and "hostfile.example" in done.stderr, done.stderr


# -- the scheduler's SIGTERM reaches the ranks -------------------------------------------------------------------
def _processes_naming(marker: str):
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in part for part in (proc.info["cmdline"] or [])):
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.mark.slow
def test_a_sigterm_to_train_node_stops_every_rank_with_a_step_checkpoint(tmp_path):
    """docker stop, Kubernetes, systemd and `kill PID` signal the wrapper only. It used to `exec` DeepSpeed's
    runner, which handles SIGTERM only for multi-node pdsh: the runner died, `deepspeed.launcher.launch` and the
    ranks were orphaned and trained on to the end, with no graceful-stop checkpoint. Now the wrapper forwards the
    signal to the launcher's whole process group and waits for it: every rank finishes its step, checkpoints it,
    and no process of the run outlives the wrapper, which exits 130 ("interrupted", as mmlnb-dist does)."""
    import signal

    from support.fusion import CPU_DEMO, make_shards

    shards = make_shards(tmp_path, n=120, size=64)
    runs = tmp_path / "runs"
    log = tmp_path / "wrapper.log"
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHON", "CONFIG", "PROFILE", "HOSTFILE", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                            "MASTER_ADDR", "MASTER_PORT")}
    environ.update(NUM_GPUS="2", PROFILE=str(CPU_DEMO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
    args = [f"data.shards={shards}", f"run.output_dir={runs}", "run.name=tk", "tracking.backends=[stdout]",
            "data.loader.num_workers=0", "data.loader.image_size=64", "distributed.precision=fp32",
            "train.global_batch_size=8", "train.log_every=1", "train.epochs=30"]
    with log.open("w") as out:
        wrapper = subprocess.Popen(["bash", str(LAUNCH / "train_node.sh"), *args], cwd=tmp_path, env=environ,
                                   stdout=out, stderr=subprocess.STDOUT)
    metrics = runs / "tk" / "metrics.jsonl"
    try:
        # signal once training has logged an optimizer step
        wait_until(lambda: metrics.is_file() and '"train/loss"' in metrics.read_text(), wrapper, "its first step",
                   log.read_text)
        wrapper.send_signal(signal.SIGTERM)
        code = wrapper.wait(timeout=240)
        left = _processes_naming(str(runs))
        text = log.read_text()
        assert left == [], f"processes outlived the wrapper: {[p.info['cmdline'][:4] for p in left]}\n{text[-3000:]}"
        assert code == 130, text[-4000:]
        assert "checkpointed" in text, text[-4000:]
        latest = (runs / "tk" / "checkpoints" / "latest").read_text()
        assert latest.startswith(("step-", "epoch-")) and (runs / "tk" / "checkpoints" / latest).is_dir(), latest
        steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
        assert max(steps) < 30 * 3, "the run trained to its end instead of stopping"
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
        for proc in _processes_naming(str(runs)):  # the orphans of a failed run: this test started them
            proc.kill()


# -- train_multinode.sh reads the hostfile as DeepSpeed does ------------------------------------------------------
FAKE_PYTHON = """#!/usr/bin/env bash
# The DeepSpeed runner prints its arguments, one a line, instead of starting anything; anything else is Python.
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then shift 2; printf '%s\\n' "$@"; exit 0; fi
exec {python} "$@"
"""


@pytest.fixture
def fake_python(tmp_path):
    import sys

    real = ROOT / ".venv" / "bin" / "python"
    path = tmp_path / "fakepy"
    path.write_text(FAKE_PYTHON.format(python=str(real if real.exists() else sys.executable)))
    path.chmod(0o755)
    return str(path)


def test_train_multinode_takes_the_master_from_the_first_host_line_not_a_comment(elsewhere, fake_python):
    """launch/hostfile.example says "Copy to launch/hostfile" and starts with comment lines: the first line's first
    word, `#`, became --master_addr."""
    hostfile = elsewhere / "hosts"
    hostfile.write_text((LAUNCH / "hostfile.example").read_text())
    done = run_wrapper("train_multinode.sh", ["data.shards=empty"], elsewhere, HOSTFILE=str(hostfile),
                       PYTHON=fake_python)
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[argv.index("--master_addr") + 1] == "node1", argv
    assert argv[argv.index("--hostfile") + 1] == str(hostfile)


def test_train_multinode_keeps_a_master_addr_it_is_given(elsewhere, fake_python):
    hostfile = elsewhere / "hosts"
    hostfile.write_text("gpu-a slots=2\n")
    done = run_wrapper("train_multinode.sh", ["data.shards=empty"], elsewhere, HOSTFILE=str(hostfile),
                       PYTHON=fake_python, MASTER_ADDR="10.0.0.7")
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[argv.index("--master_addr") + 1] == "10.0.0.7", argv


@pytest.mark.parametrize("text, message", [
    ("# only comments\n\n   \n", "no hosts"),
    ("# nodes\nnode1 slots=8\n\nnode2\n", ":4"),
    ("node1 slots=eight\n", ":1"),
    ("node1 slots=4\nnode2 slots=0\n", ":2"),  # DeepSpeed's runner would start no rank there, or fail on it
], ids=["no-hosts", "no-slots", "bad-slots", "zero-slots"])
def test_train_multinode_refuses_a_hostfile_deepspeed_would_misread(elsewhere, fake_python, text, message):
    hostfile = elsewhere / "hosts"
    hostfile.write_text(text)
    done = run_wrapper("train_multinode.sh", ["data.shards=empty"], elsewhere, HOSTFILE=str(hostfile),
                       PYTHON=fake_python)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "", "the launcher must not start"
    assert str(hostfile) in done.stderr and message in done.stderr, done.stderr
    if message != "no hosts":
        assert "slots=" in done.stderr, done.stderr


# -- run_launcher forwards Ctrl-C to a launcher that can receive it -------------------------------------------------
SIGINT_PROBE = """#!/usr/bin/env bash
# The DeepSpeed runner says whether SIGINT reaches it (not ignored), then waits to be stopped.
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then
  exec {python} -c "import signal, time
print('ignored' if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else 'default', flush=True)
time.sleep(60)"
fi
exec {python} "$@"
"""


def test_a_ctrl_c_forwarded_by_the_wrapper_reaches_the_launcher(tmp_path, elsewhere):
    """A background job of a script starts with SIGINT ignored: the wrapper forwarded Ctrl-C to a launcher (and
    ranks) that ignored it, and waited for them to train to the end. The launcher now gets SIGINT and stops."""
    import signal
    import sys

    real = ROOT / ".venv" / "bin" / "python"
    probe = tmp_path / "probe"
    probe.write_text(SIGINT_PROBE.format(python=str(real if real.exists() else sys.executable)))
    probe.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CONFIG", "PROFILE", "HOSTFILE")}
    # The wrapper starts as from a terminal, with SIGINT at its default, whatever the test process has (a shell
    # cannot undo a SIGINT ignored on entry; a full CI session once reached this test with it ignored)
    wrapper = subprocess.Popen(["bash", str(LAUNCH / "train_node.sh"), "data.shards=empty"], cwd=elsewhere,
                               env={**environ, "PYTHON": str(probe), "NUM_GPUS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wrapper.stdout.readline().strip() == "default"
        wrapper.send_signal(signal.SIGINT)
        out, err = wrapper.communicate(timeout=30)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
    assert wrapper.returncode == 130, err
    assert "stopped by SIGINT" in err and "Done" not in err
