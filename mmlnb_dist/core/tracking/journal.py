"""The MLflow journal: each call of a stage goes to `<run_dir>/tracking/<stage>.jsonl` first (never lost to a server).

One journal is one MLflow run. `<run_dir>/tracking/<stage>.json` (the state) records the tracking URI, the run
id and `acked`: how many leading events the server acknowledged (other stores': `stores.switch_store`). Events
are sent strictly in journal order and `acked` moves past an event only after the server accepted it, so
whatever a crash or a lost server leaves behind is exactly the events after `acked` (`pending()`), and `upload`
sends those and nothing else.

Lifecycle events mark the process segments of the run: `start` (the first process), `resume` (each resumed
process, which continues the same MLflow run), `close` (the status a process ended with). A segment with no
`close` was killed without a chance to say so (SIGKILL, power loss); the next resume or `tracking sync` closes it
as KILLED. While a process writes a journal it holds an advisory lock on `<stage>.lock`; the kernel drops the
lock when the process dies, which is how `tracking sync` tells a dead writer from a live one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..files import replace_text
from .events import METRICS_PER_BATCH, apply_event, log_metrics
from .metric_name import mlflow_metrics

log = logging.getLogger(__name__)

JOURNAL_DIR = "tracking"
"""Sub-folder of a run folder that holds its journals (one per stage)."""
LIFECYCLE = ("start", "resume", "close")


def now_ms() -> int:
    return int(time.time() * 1000)


def run_record_path(run_dir: Path, stage: str) -> Path:
    """`<run_dir>/tracking/<stage>.json`: the MLflow run a run folder's stage logged to (the journal's state)."""
    return Path(run_dir) / JOURNAL_DIR / f"{stage}.json"


def write_run_record(path: Path, **updates: Any) -> None:
    """Merge `updates` into the record at `path`, atomically (a reader never sees half a file)."""
    state = {**(json.loads(path.read_text()) if path.is_file() else {}), **updates}
    replace_text(path, json.dumps(state, indent=1))


class Spool:
    """One MLflow run's append-only journal of calls plus its state file (run id, acknowledged prefix)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path = self.path.with_suffix(".json")
        self.lock_path = self.path.with_suffix(".lock")
        self._lock_fh = None
        self._repaired = False
        self._unreadable: set = set()  # line numbers warned about: once each, not once per read
        self.count = sum(1 for _ in self.events())

    @classmethod
    def for_stage(cls, run_dir: Path, stage: str) -> "Spool":
        return cls(run_record_path(run_dir, stage).with_suffix(".jsonl"))

    # -- events
    def events(self) -> Iterator[Dict[str, Any]]:
        if not self.path.is_file():
            return
        with open(self.path, errors="replace") as fh:  # bytes a crash garbled are an unreadable line, no more
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    return  # a line cut short by a crash (repaired before the next append)
                line = line.strip()
                if line:
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        if number not in self._unreadable:
                            self._unreadable.add(number)
                            log.warning("%s: skipping unreadable line %d (the event it held is lost)", self.path,
                                        number)

    def _repair_tail(self) -> None:
        """Drop a last line a killed process left half written, so later appends start on a fresh line."""
        self._repaired = True
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            fh.truncate(data.rfind(b"\n") + 1)

    def append(self, event: Dict[str, Any]) -> None:
        if not self._repaired:
            self._repair_tail()
        event = {**event, "ts": event.get("ts", now_ms())}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(event) + "\n")
        self.count += 1

    # -- state
    def state(self) -> Dict[str, Any]:
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def write_state(self, **updates: Any) -> None:
        write_run_record(self.state_path, **updates)

    @property
    def acked(self) -> int:
        return int(self.state().get("acked", 0))

    def pending(self) -> List[Tuple[int, Dict[str, Any]]]:
        """(index, event) of every event the server has not acknowledged, in journal order."""
        acked = self.acked
        return [(i, e) for i, e in enumerate(self.events()) if i >= acked]

    def open_segment(self) -> Optional[Dict[str, Any]]:
        """The last event when the last process segment never closed (its writer was killed), else None."""
        last, last_lifecycle = None, None
        for event in self.events():
            last = event
            if event["op"] in LIFECYCLE:
                last_lifecycle = event["op"]
        return last if last_lifecycle in ("start", "resume") else None

    def close_killed_segment(self) -> bool:
        """Journal a KILLED close for a segment whose process died without closing; True when there was one."""
        last = self.open_segment()
        if last is None:
            return False
        self.append({"op": "close", "status": "KILLED", "ts": last.get("ts", now_ms()), "recovered": True})
        return True

    # -- the writer's lock
    def lock(self) -> bool:
        """Take the writer's lock (False when another live process holds it)."""
        fh = open(self.lock_path, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock_fh = fh
        return True

    def unlock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing the file releases the lock
            self._lock_fh = None

    def writer_alive(self) -> bool:
        """Whether a live process (this one included, through another logger) is writing this journal."""
        if self._lock_fh is not None:
            return True
        if not self.lock():
            return True
        self.unlock()
        return False

    def archive(self) -> Path:
        """Move this journal aside (`<stage>.<n>.jsonl` + state) so a fresh run starts an empty one; the
        archived journal stays a run of its own for `tracking sync`."""
        n = 1
        while self.path.with_suffix(f".{n}.jsonl").exists():
            n += 1
        dest = self.path.with_suffix(f".{n}.jsonl")
        self.path.replace(dest)
        if self.state_path.is_file():
            self.state_path.replace(dest.with_suffix(".json"))
        self.count = 0
        return dest


def recorded_run(run_dir: Path, stage: str = "train") -> Dict[str, Any]:
    """The MLflow run `run_dir`'s `stage` logged to: the record's `run_id`, `tracking_uri`, `experiment`,
    `run_name` and (with the journal) `acked`; {} when it never reached a server (reads only, creates nothing)."""
    path = run_record_path(run_dir, stage)
    return json.loads(path.read_text()) if path.is_file() else {}


def unsent_events(run_dir: Path, stage: str, run_id: str, uri: str) -> int:
    """How many events of `run_dir`'s `stage` journal MLflow run `run_id` at `uri` has not received (0 without a
    journal of that run and store, or while a live process still writes it)."""
    from .server import absolute_sqlite_uri

    path = run_record_path(run_dir, stage).with_suffix(".jsonl")
    if not path.is_file():
        return 0
    spool = Spool(path)
    state = spool.state()
    if state.get("run_id") != run_id or absolute_sqlite_uri(state.get("tracking_uri") or "") != \
            absolute_sqlite_uri(uri) or spool.writer_alive():
        return 0
    return len(spool.pending())


def find_journals(root: Path) -> List[Path]:
    """Every journal (`tracking/*.jsonl`) in run folder `root` or anywhere below it (a whole runs folder), also
    below a `tracking` folder: a run named `tracking` keeps its journal in `tracking/tracking/`."""
    found: List[Path] = []
    for folder, dirs, files in os.walk(Path(root)):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "mlartifacts")
        if Path(folder).name == JOURNAL_DIR:
            found.extend(path for path in (Path(folder, f) for f in sorted(files) if f.endswith(".jsonl"))
                         if _is_journal(path))
    return found


def _is_journal(path: Path) -> bool:
    """False for a file whose first record is no journal event (a run's own `metrics.jsonl`)."""
    with open(path, errors="replace") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        return "op" in json.loads(first)
    except (ValueError, TypeError):
        return True  # empty, or a damaged line (`upload` names it)


JOURNAL_TAG = "mmlnb.journal_start"
"""The tag naming the journal a run was created from (a digest of its start event)."""


def ensure_run(client, spool: Spool, uri: str, experiment: Optional[str] = None) -> Tuple[str, bool]:
    """The MLflow run of this journal at `uri`: the recorded one when the server still has it, else a new run
    built from the `start` event (then every event is pending again). Returns (run_id, created)."""
    from .server import absolute_sqlite_uri, get_or_create_experiment, require_sqlite_store
    from .stores import switch_store
    switch_store(spool, uri)  # the run and acknowledged count of `uri` when it was sent there before
    state = spool.state()
    # a journal written before relative SQLite paths were recorded absolute still names the same store
    if state.get("run_id") and absolute_sqlite_uri(state.get("tracking_uri") or "") == absolute_sqlite_uri(uri):
        # a store that is gone is not a fresh server: a new run there would orphan the recorded one
        require_sqlite_store(uri, f"run {state['run_id']} of {spool.path}")
        try:  # a run deleted in the UI is still fetched by id: logged to, it stayed out of sight until `mlflow gc`
            if client.get_run(state["run_id"]).info.lifecycle_stage == "active":
                return state["run_id"], False
        except Exception as err:  # noqa: BLE001 - only "no such run" (e.g. a fresh server) means make a new one
            # any other error (a 503, a timeout) says nothing about the run: taken for "gone", the whole journal
            # went again and every point the run already had was logged twice. It stays pending for a later sync.
            if getattr(err, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                raise ConnectionError(f"could not read run {state['run_id']} at {uri} ({type(err).__name__}: "
                                      f"{str(err)[:200]}); {spool.path} stays pending") from err
        log.warning("run %s is not at %s any more (or was deleted); uploading %s into a new run", state["run_id"],
                    uri, spool.path)
    start = next((e for e in spool.events() if e["op"] == "start"), None)
    if start is None:
        raise ValueError(f"{spool.path} has no start event")
    experiment = experiment or start["experiment"]
    exp_id = get_or_create_experiment(client, experiment, Path(start["artifact_root"]))
    # A process killed between create_run and recording the run id left a run that no journal named, RUNNING for
    # good beside the one its journal's upload then created: the run carries its start event's digest, and a run
    # with it is this journal's.
    identity, tags = start, dict(start.get("tags") or {})
    here, written_in = spool.path.resolve().parent.parent, journal_folder(spool)
    if written_in is not None and written_in != here and (written_in / JOURNAL_DIR / spool.path.name).is_file():
        # a copy of a folder that still has this journal (`cp -r runs/a runs/a2` before a run was made): its own
        # run, named by its own folder; sharing the start's digest, both folders went into one run. (A folder
        # moved, the old one gone, is still the same run: it finds the one a killed process made.)
        identity, tags = {**start, "copied_to": str(here)}, {**tags, "run_dir": str(here)}
    journal_tag = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]
    found = client.search_runs([exp_id], filter_string=f"tags.`{JOURNAL_TAG}` = '{journal_tag}'", max_results=1)
    run = found[0] if found else client.create_run(
        exp_id, run_name=start["run_name"], tags={**tags, JOURNAL_TAG: journal_tag}, start_time=start.get("ts"))
    spool.write_state(tracking_uri=uri, experiment=experiment, run_name=start["run_name"],
                      run_id=run.info.run_id, acked=0)
    return run.info.run_id, not found


def journal_folder(spool: Spool) -> Optional[Path]:
    """The run folder a journal was written in (its start event's `run_dir` tag), or None when it names none."""
    start = next((e for e in spool.events() if e["op"] == "start"), None)
    written_in = ((start or {}).get("tags") or {}).get("run_dir")
    return Path(written_in) if written_in else None


def relocated(event: Dict[str, Any], written_in: Optional[Path], here: Path) -> Dict[str, Any]:
    """An artifact event of a journal written in run folder `written_in`, read from run folder `here`: a file of
    that folder is taken from `here` when it is there. Events name files by absolute path, so a folder moved (to
    another disk, another machine for `tracking sync`) uploaded nothing, and a copy uploaded the original's files."""
    if event.get("op") != "artifact" or written_in is None or Path(written_in) == Path(here):
        return event
    try:
        local = Path(here) / Path(event["path"]).relative_to(written_in)
    except ValueError:  # a file from outside the run folder stays where it is
        return event
    return {**event, "path": str(local)} if local.exists() else event


def send_pending(client, run_id: str, spool: Spool) -> int:
    """Send every unacknowledged event in order, moving `acked` past each one the server accepted; the first
    failure raises and leaves it and everything after it pending. Runs of metric events go as one request
    (up to `METRICS_PER_BATCH` metrics), acknowledged together. Returns how many events were sent."""
    pending = spool.pending()
    written_in, here = journal_folder(spool), spool.path.resolve().parent.parent  # `<run_dir>/tracking/x.jsonl`
    sent, i = 0, 0
    while i < len(pending):
        index, event = pending[i]
        if event["op"] != "metrics":
            apply_event(client, run_id, relocated(event, written_in, here))
            i += 1
        else:
            batch: List[Any] = []
            while i < len(pending) and pending[i][1]["op"] == "metrics" and (
                    not batch or len(batch) + len(pending[i][1]["metrics"]) <= METRICS_PER_BATCH):
                index, event = pending[i]
                batch.extend(mlflow_metrics(event))
                i += 1
            log_metrics(client, run_id, batch)  # more than one request: one event's many metrics
        spool.write_state(acked=index + 1)
        sent = i
    return sent


def upload(spool: Spool, uri: Optional[str] = None, experiment: Optional[str] = None) -> Dict[str, Any]:
    """Upload what one journal holds but the server has not acknowledged. Idempotent: a second call sends
    nothing. A journal whose writer died mid-segment is closed as KILLED first; one still being written by a live
    process, or holding no event, is skipped. Returns {"run_id", "sent", "created", "uri", "journal", "skipped"}."""
    from .server import absolute_sqlite_uri, limit_http_retries, open_client, server_reachable

    result: Dict[str, Any] = {"journal": str(spool.path), "run_id": spool.state().get("run_id"), "sent": 0,
                              "created": False, "uri": uri or spool.state().get("tracking_uri"), "skipped": None}
    if spool.writer_alive():
        result["skipped"] = "a live process is still writing it"
        return result
    if next(spool.events(), None) is None:  # its process was killed writing its first line: no run to make
        return {**result, "skipped": "it holds no event (its process stopped before logging one)"}
    spool.close_killed_segment()
    if not spool.pending() and (uri is None or absolute_sqlite_uri(uri) == absolute_sqlite_uri(
            spool.state().get("tracking_uri") or "")):  # one store, however spelled: nothing to send
        return result
    uri = result["uri"]
    if not uri:
        raise ValueError(f"{spool.path}: no tracking URI recorded for this run; pass one (--uri)")
    limit_http_retries()
    if not server_reachable(uri):
        raise ConnectionError(f"tracking server {uri} is not reachable")
    client = open_client(uri)
    run_id, created = ensure_run(client, spool, uri, experiment)
    result.update(run_id=run_id, created=created, sent=send_pending(client, run_id, spool))
    return result


def sync_run_dir(root: Path, uri: Optional[str] = None, experiment: Optional[str] = None) -> List[Dict[str, Any]]:
    """`upload` every journal in run folder `root` or below it (a runs folder). A journal that fails (server
    unreachable, a call refused) gets an "error" entry; the others are still uploaded."""
    journals = find_journals(root)
    if not journals:
        raise FileNotFoundError(f"no MLflow journal in {root} (expected <run folder>/{JOURNAL_DIR}/<stage>.jsonl "
                                f"in it or in a folder below it)")
    results = []
    for path in journals:
        try:
            results.append(upload(Spool(path), uri, experiment))
        except (ConnectionError, ValueError) as err:
            results.append({"journal": str(path), "error": str(err)})
        except Exception as err:  # noqa: BLE001 - one refused call must not stop the other journals
            results.append({"journal": str(path), "error": f"{type(err).__name__}: {str(err)[:300]}"})
    return results
