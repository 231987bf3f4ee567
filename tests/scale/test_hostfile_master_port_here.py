"""With a hostfile whose rendezvous host (MASTER_ADDR, default its first host) is the machine the wrapper runs on,
the rendezvous port is chosen and checked as on one node: the wrappers passed a fixed 29500 (or the MASTER_PORT
given) unchecked, so a second multi-node run started from the same first node, or a port another process listens
on there, failed at the rendezvous on every node after their start-up ("address already in use"). A rendezvous
host elsewhere keeps 29500 (only that host can tell which port is free)."""
from __future__ import annotations

import errno
import socket

import pytest

from support.launch_wrappers import NO_GPU_DEEPSPEED_PRINTER, wrapper_runner

FAKE = NO_GPU_DEEPSPEED_PRINTER
SCRIPTS = [("train_multinode.sh", ["data.shards=s"]), ("finetune_vlm.sh", ["vlm.pairs=p"])]


@pytest.mark.parametrize("script, args", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_a_master_port_in_use_on_the_rendezvous_host_here_is_refused(tmp_path, busy_port, script, args):
    (tmp_path / "hosts").write_text("localhost slots=1\nnode2 slots=1\n")
    done = wrapper_runner(tmp_path, FAKE)(script, args, HOSTFILE="hosts", MASTER_PORT=str(busy_port))
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert f"MASTER_PORT={busy_port} is in use" in done.stderr, done.stderr


@pytest.mark.parametrize("script, args", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_without_a_master_port_a_free_one_is_chosen_here(tmp_path, script, args):
    (tmp_path / "hosts").write_text("localhost slots=1\nnode2 slots=1\n")
    with socket.socket() as held:  # 29500, the launchers' default, taken (by this test or by someone else)
        try:
            held.bind(("", 29500))
            held.listen()
        except OSError as err:
            assert err.errno == errno.EADDRINUSE
        done = wrapper_runner(tmp_path, FAKE)(script, args, HOSTFILE="hosts")
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[argv.index("--master_addr") + 1] == "localhost" and argv[argv.index("--master_port") + 1] != "29500"


@pytest.mark.parametrize("script, args", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_two_runs_with_a_rendezvous_host_elsewhere_get_different_ports(tmp_path, script, args):
    # Only that host could tell which port is free: the fixed 29500 made a second run with the same remote master
    # fail at the rendezvous on every node after start-up. The port is derived from the run (its folder, hostfile
    # and arguments): two runs get two ports, the same command line the same one; MASTER_PORT given is kept.
    (tmp_path / "hosts").write_text("node1.invalid slots=1\nnode2.invalid slots=1\n")
    go = wrapper_runner(tmp_path, FAKE)

    def port(*extra, **env):
        done = go(script, [*args, *extra], HOSTFILE="hosts", **env)
        assert done.returncode == 0, done.stderr
        argv = done.stdout.splitlines()
        assert argv[argv.index("--master_addr") + 1] == "node1.invalid", argv
        return int(argv[argv.index("--master_port") + 1])

    first, second = port("run.name=a"), port("run.name=b")
    assert first != second and 1024 < first < 32768 and 1024 < second < 32768, (first, second)
    assert port("run.name=a") == first
    assert port("run.name=a", MASTER_PORT="29611") == 29611


@pytest.mark.parametrize("script, args", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_an_ipv6_rendezvous_host_here_is_this_machine(tmp_path, busy_port, script, args):
    # ::1 (or a name with IPv6 addresses alone) is this machine too: an IPv4 socket could not bind it, so the port
    # given went unchecked as for a host elsewhere
    (tmp_path / "hosts").write_text("localhost slots=1\nnode2 slots=1\n")
    done = wrapper_runner(tmp_path, FAKE)(script, args, HOSTFILE="hosts", MASTER_ADDR="::1",
                                          MASTER_PORT=str(busy_port))
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert f"MASTER_PORT={busy_port} is in use" in done.stderr, done.stderr
