"""Worker groups kept for a whole search (`tune.worker_pool`).

A Ray Train `TorchTrainer` per trial starts three processes per trial (Tune's trial process, Ray Train's
controller, each worker), and the workers import torch, DeepSpeed and the recipe again: about 20 s a trial on
2 cores against a 13 s training run (BENCHMARKS.md "Search overhead levers"). The pool keeps instead, for each
trial that may run at the same time, one group of Ray actors (one per rank) whose process group and imports
outlive the trial: a trial takes a free group, runs its recipe on every rank (a new DeepSpeed engine on the same
process group, as a reused in-process trial does) and hands the group back.

Reports: rank 0 hands each epoch's metrics to the trial process, which gives them to Tune and answers go or stop
(an ASHA stop); rank 0 broadcasts the answer, so that every rank leaves the recipe at the same epoch. A group
whose trial failed is discarded (its ranks may be stuck in a collective) and built again for the next trial.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

GO, STOP = "go", "stop"
EVENT_POLL_S = 1.0  # how long one call for rank 0's next report waits before the trial checks its ranks


class TrialStopped(SystemExit):
    """The scheduler stopped the trial at a report: a `SystemExit` with code 0, as Tune stops an in-process trial,
    so the recipe ends its tracked run FINISHED (tagged stopped_early) and lets it through, as it does that one.
    The reason is the message (`str(err)`), not the exit code."""

    def __init__(self, reason: str):
        super().__init__(0)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class RankWorker:
    """One rank of a kept worker group (a Ray actor whose calls run in threads: `run` takes one trial at a time,
    the report calls of the trial process are answered beside it)."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size
        self._one_trial_at_a_time = threading.Lock()
        # Rank 0's reports, one queue per trial (its token): a previous trial's last `next_report` call, still
        # waiting, must not take the next trial's first report (seen: a search that hung at its second trial)
        self._reports: Dict[str, "queue.Queue[Tuple[int, Dict[str, float]]]"] = {}
        self._answers: "queue.Queue[str]" = queue.Queue()
        self._token: Optional[str] = None
        self._gpu: Optional[int] = None  # this rank's device index (set up by `setup`); None on the CPU

    def placement(self) -> Tuple[str, List[str]]:
        """(node id, this actor's GPU ids): asked before anything here touches CUDA (see `shared_gpus`)."""
        import ray

        return ray.get_runtime_context().get_node_id(), [str(g) for g in ray.get_gpu_ids()]

    def address(self) -> str:
        """`host:port` for the group's rendezvous (asked of rank 0)."""
        import ray

        with socket.socket() as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        return f"{ray.util.get_node_ip_address()}:{port}"

    def setup(self, master: str, backend: str, timeout_s: int, gpus: Optional[Tuple[str, int]]) -> Dict[str, Any]:
        """Join the group's process group and import what every trial needs, once for the whole search. `gpus`:
        (CUDA_VISIBLE_DEVICES, this rank's index in it), from `shared_gpus`; None on the CPU."""
        import datetime

        import ray
        import torch.distributed as dist

        if gpus is not None:  # before the first CUDA call of this process, which fixes what it sees
            os.environ["CUDA_VISIBLE_DEVICES"], self._gpu = gpus
        host, port = master.rsplit(":", 1)
        os.environ.update({"MASTER_ADDR": host, "MASTER_PORT": port, "RANK": str(self.rank),
                           "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self._gpu or 0)})
        dist.init_process_group(backend, init_method=f"tcp://{master}", rank=self.rank, world_size=self.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        import deepspeed  # noqa: F401 - imported here, once, instead of in each trial

        return {"rank": self.rank, "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def run(self, token: str, cfg_dict: Dict[str, Any], recipe: str) -> Dict[str, Any]:
        """Run one trial's recipe as this rank; rank 0 writes the trial's result file unless it was stopped."""
        import ray
        import torch
        import torch.distributed as dist

        from ..core.distributed import DistEnv
        from .trial import run_rank

        with self._one_trial_at_a_time:
            reports = queue.Queue()
            self._reports = {token: reports}
            self._answers = queue.Queue()
            self._token = token
            device = torch.device("cpu") if self._gpu is None else torch.device("cuda", self._gpu)
            env = DistEnv(rank=self.rank, world_size=self.world_size, local_rank=self._gpu or 0, device=device)

            def decide(epoch: int, metrics: Dict[str, float]) -> None:
                # every rank calls this at the same epoch (the recipe reports on all ranks): rank 0 asks the
                # trial, and its answer reaches every rank so that all leave together
                flag = torch.zeros(1, dtype=torch.int64, device=device)
                if self.rank == 0:
                    reports.put((epoch, metrics))
                    flag[0] = int(self._answers.get() == STOP)
                dist.broadcast(flag, src=0)
                if flag.item():
                    raise TrialStopped(f"stopped by the scheduler after epoch {epoch}")

            try:
                run_rank(cfg_dict, recipe, env, decide, node_id=ray.get_runtime_context().get_node_id())
                stopped = False
            except TrialStopped:
                stopped = True
            finally:
                self._token = None
            return {"rank": self.rank, "pid": os.getpid(), "stopped": stopped}

    def next_report(self, token: str, wait_s: float) -> Optional[Tuple[int, Dict[str, float]]]:
        """Rank 0's next (epoch, metrics) of the trial `token`, or None if none came within `wait_s`."""
        reports = self._reports.get(token)
        if reports is None:  # the trial's run has not started here yet (or is long over)
            time.sleep(min(wait_s, 0.1))
            return None
        try:
            return reports.get(timeout=wait_s)
        except queue.Empty:
            return None

    def answer(self, token: str, decision: str) -> None:
        if token == self._token:
            self._answers.put(decision)

    def stop_current(self) -> None:
        """Stop whatever trial runs (its trial process is gone): rank 0 no longer waits for an answer."""
        if self._token is not None:
            self._answers.put(STOP)


class WorkerPool:
    """The search's groups (a Ray actor owned by the driver, so the groups end with the search): `acquire` gives
    a trial a free group, building it on first use or after a failure; `release` takes it back."""

    def __init__(self, groups: int, workers: int, resources: Dict[str, float], strategy: str, backend: str,
                 timeout_s: int):
        self._spec = (workers, resources, strategy, backend, timeout_s)
        self._groups: List[Optional[List[Any]]] = [None] * groups
        self._bundles: List[Any] = [None] * groups
        self._holders: List[Optional[str]] = [None] * groups
        self._lock = threading.Lock()
        self.built = 0  # groups built over the search (a failure costs one more)

    def acquire(self, trial_id: str) -> Optional[Tuple[int, List[Any]]]:
        """(group index, rank actors) for the trial, or None while every group is taken."""
        stale = None
        with self._lock:
            if trial_id in self._holders:
                # the same trial again: a retry whose earlier attempt's process died without handing the group
                # back, so its ranks may still run that attempt (rank 0 waiting for an answer that never comes)
                k = self._holders.index(trial_id)
                stale, self._groups[k] = self._groups[k], None
            elif None in self._holders:
                k = self._holders.index(None)
                self._holders[k] = trial_id
            else:
                return None
        if stale is not None:
            self._discard(k, stale)
        if self._groups[k] is None:  # only this trial holds group k, so it is built outside the lock
            self._groups[k] = self._build(k)
        return k, self._groups[k]

    def release(self, trial_id: str, broken: bool = False) -> None:
        with self._lock:
            if trial_id not in self._holders:
                return  # released already (the trial itself, then Tune's callback)
            k = self._holders.index(trial_id)
            self._holders[k] = None
            group, self._groups[k] = self._groups[k], (None if broken else self._groups[k])
        if group is None:
            return
        if broken:
            self._discard(k, group)
        else:
            group[0].stop_current.remote()  # no-op unless the trial's process died while its ranks ran

    def groups_built(self) -> int:
        return self.built

    def shutdown(self) -> None:
        """End every group (the search is over)."""
        with self._lock:
            groups, self._groups = self._groups, [None] * len(self._groups)
        for k, group in enumerate(groups):
            if group is not None:
                self._discard(k, group)

    def _build(self, k: int) -> List[Any]:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        workers, resources, strategy, backend, timeout_s = self._spec
        bundles = placement_group([dict(resources)] * workers, strategy=strategy)
        waited = 0.0
        while not ray.wait([bundles.ready()], timeout=30.0)[0]:  # a cluster may be scaling up: say so, wait on
            waited += 30.0
            log.warning("worker group %d: still waiting for %d x %s on the cluster after %.0f s", k, workers,
                        resources, waited)
        self._bundles[k] = bundles
        actor = ray.remote(RankWorker)
        ranks = [actor.options(num_cpus=resources.get("CPU", 0), num_gpus=resources.get("GPU", 0),
                               max_concurrency=4,
                               scheduling_strategy=PlacementGroupSchedulingStrategy(bundles, i)).remote(i, workers)
                 for i in range(workers)]
        try:
            gpus = shared_gpus(ray.get([r.placement.remote() for r in ranks]))
            master = ray.get(ranks[0].address.remote())
            ray.get([r.setup.remote(master, backend, timeout_s, g) for r, g in zip(ranks, gpus)])
        except BaseException:
            self._discard(k, ranks)  # else its bundles would hold the resources the next build waits for
            raise
        self.built += 1
        return ranks

    def _discard(self, k: int, group: List[Any]) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for rank in group:
            ray.kill(rank)
        if self._bundles[k] is not None:
            remove_placement_group(self._bundles[k])
            self._bundles[k] = None


def shared_gpus(placements: List[Tuple[str, List[str]]]) -> List[Optional[Tuple[str, int]]]:
    """Per rank: (CUDA_VISIBLE_DEVICES, the rank's device index in it), or None for a rank without a GPU.

    Ray shows each actor only its own GPUs; ranks on one node then cannot see each other's devices, which NCCL's
    peer-to-peer paths between them need. As Ray Train does for its worker groups, every rank on a node is shown
    the GPUs of all the group's ranks on that node and picks its own by index."""
    by_node: Dict[str, List[str]] = {}
    for node, ids in placements:
        by_node.setdefault(node, []).extend(i for i in ids if i not in by_node.get(node, []))
    out: List[Optional[Tuple[str, int]]] = []
    for node, ids in placements:
        visible = sorted(by_node[node], key=lambda i: (len(i), i))  # numeric order for numeric ids
        out.append((",".join(visible), visible.index(ids[0])) if ids else None)
    return out


def start_pool(name: str, groups: int, tune_cfg) -> Any:
    """The driver's pool actor, named so that trial processes find it."""
    import ray

    use_gpu = tune_cfg.gpus_per_trial > 0
    resources = {"CPU": tune_cfg.cpus_per_trial, **({"GPU": tune_cfg.gpus_per_trial} if use_gpu else {})}
    return ray.remote(WorkerPool).options(name=name, num_cpus=0, max_concurrency=groups + 4).remote(
        groups, tune_cfg.workers_per_trial, resources, tune_cfg.placement_strategy,
        "nccl" if use_gpu else "gloo", 1800)


def run_in_pool(pool_name: str, trial_id: str, cfg_dict: Dict[str, Any], recipe: str,
                report: Callable[[int, Dict[str, float]], None]) -> None:
    """The trial process's part: take a group, start the recipe on its ranks, relay rank 0's reports to Tune
    (`report`, which raises when the scheduler stops the trial) and hand the group back."""
    import ray

    pool = ray.get_actor(pool_name)
    while (taken := ray.get(pool.acquire.remote(trial_id))) is None:
        time.sleep(0.5)
    _, ranks = taken
    token = f"{trial_id}-{time.time_ns()}"
    running = [rank.run.remote(token, cfg_dict, recipe) for rank in ranks]
    ended = []  # "done", or "stopped" when `report` raised: the ranks then leave at that epoch, the group is sound

    def relayed(epoch: int, metrics: Dict[str, float]) -> None:
        try:
            report(epoch, metrics)
        except BaseException:
            ended.append("stopped")
            raise

    try:
        _relay(ranks[0], token, running, relayed)
        ended.append("done")
    finally:
        ray.get(pool.release.remote(trial_id, broken=not ended))


def _relay(rank0, token: str, running: List[Any], report: Callable[[int, Dict[str, float]], None]) -> None:
    """Rank 0's reports to Tune until every rank is done. Raises what a rank raised, and what `report` raises
    (after telling rank 0 to stop)."""
    import ray

    pending = list(running)
    asked = rank0.next_report.remote(token, EVENT_POLL_S)
    while pending:
        ready, _ = ray.wait([asked, *pending], num_returns=1)
        if asked in ready:
            event = ray.get(asked)
            if event is not None:
                try:
                    report(*event)
                except BaseException:  # the scheduler's stop (or an interrupt): the ranks leave at this epoch
                    ray.get(rank0.answer.remote(token, STOP))
                    raise
                rank0.answer.remote(token, GO)
            asked = rank0.next_report.remote(token, EVENT_POLL_S)
            continue
        for done in ready:
            pending.remove(done)
            ray.get(done)  # a rank's error ends the trial here
