"""Two runs that start at the same moment on one tracking server (two Tune trials on a cluster) log the same shard
set as their input. MLflow's SQL store looks the dataset up, then inserts it: the second insert fails with
`UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest`. The logger took that for a
dead server and disabled tracking for the run, which then stayed RUNNING on the server with its metrics only in
its journal (seen in tests/tuning/test_ray_cluster.py: a finished trial's run was never closed). The dataset exists
by then: sending the event again links it."""
from __future__ import annotations

import pytest


class Refused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.error_code = "BAD_REQUEST"


RACE = ("BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
        "datasets.digest [SQL: INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type")


class Client:
    def __init__(self, failures):
        self.failures, self.calls = list(failures), 0

    def log_inputs(self, run_id, datasets):
        self.calls += 1
        if self.failures:
            raise Refused(self.failures.pop(0))


EVENT = {"op": "inputs", "datasets": [{"name": "demo:train", "digest": "848f325b89a4c3ad", "source": "/data/demo",
                                       "source_type": "local", "profile": {"num_samples": 360}, "context": "train"}]}


def test_a_dataset_another_run_inserted_at_the_same_moment_is_linked_on_a_second_try():
    from mmlnb_dist.core.tracking.journal import apply_event

    client = Client([RACE])
    apply_event(client, "run", EVENT)
    assert client.calls == 2


def test_other_refusals_of_the_inputs_still_raise():
    from mmlnb_dist.core.tracking.journal import apply_event

    with pytest.raises(Refused, match="RESOURCE_DOES_NOT_EXIST"):
        apply_event(Client(["RESOURCE_DOES_NOT_EXIST: run not found"]), "run", EVENT)
    with pytest.raises(Refused, match="UNIQUE constraint failed: datasets"):  # a race that does not go away
        apply_event(Client([RACE] * 5), "run", EVENT)
