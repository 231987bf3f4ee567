"""`mmlnb-dist mlflow-server` probed its port with an IPv4 socket and worded every bind failure "port P on HOST is
in use": `--host ::1` (IPv6) could never start ("in use (Address family for hostname not supported)"), a host name
that does not resolve and an address that is not this machine's were told to choose another --port, and the URI
printed and polled for an IPv6 host lacked its brackets (`http://::1:P`). Now the probe binds what the host
resolves to, in its own family; only a port really held is "in use", the other failures name --host and why; and an
IPv6 host's URI is bracketed."""
from __future__ import annotations

import socket

import pytest

from support.cli import run_cli


def _server(tmp_path, *args):
    return run_cli(["mlflow-server", *args, "--backend-store", f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "--artifacts-dir", str(tmp_path / "art")])


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")


@needs_ipv6
def test_an_ipv6_host_starts_with_a_bracketed_uri(tmp_path, monkeypatch):
    import mmlnb_dist.core.tracking.server as server

    started = {}

    def serve(cmd, uri, ready_line):  # the server itself is not started: what it would be told and polled at
        started.update(cmd=cmd, uri=uri, ready_line=ready_line)
        return 0

    monkeypatch.setattr(server, "serve_foreground", serve)
    port = server.free_port()
    code, _, err = _server(tmp_path, "--host", "::1", "--port", str(port))
    assert code == 0, err
    assert started["uri"] == f"http://[::1]:{port}"
    assert f"use tracking.uri=http://[::1]:{port}" in started["ready_line"]
    assert started["cmd"][started["cmd"].index("--host") + 1] == "::1"


@needs_ipv6
def test_a_port_held_on_ipv6_is_in_use(tmp_path):
    with socket.socket(socket.AF_INET6) as holder:
        holder.bind(("::1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, err = _server(tmp_path, "--host", "::1", "--port", str(port))
    assert code == 2, err
    assert f"port {port} on ::1 is in use" in err and "--port" in err, err


def test_a_host_that_does_not_resolve_is_named_not_called_in_use(tmp_path):
    code, _, err = _server(tmp_path, "--host", "nosuchhost.invalid", "--port", "5816")
    assert code == 2, err
    assert "--host nosuchhost.invalid" in err and "resolve" in err and "in use" not in err, err


def test_an_address_of_another_machine_is_named_not_called_in_use(tmp_path):
    code, _, err = _server(tmp_path, "--host", "192.0.2.1", "--port", "5816")  # TEST-NET-1: never this machine's
    assert code == 2, err
    assert "--host 192.0.2.1" in err and "not an address of this machine" in err and "in use" not in err, err
