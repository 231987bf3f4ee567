"""Two commands started together into one fresh run.output_dir (two `train` runs, two `tune` searches) both
created the default SQLite store `<output_dir>/mlflow.db` at once: the second crashed in MLflow's schema setup
("table _alembic_tmp_experiments already exists") and ran offline. The store's creation is now serialized."""
from __future__ import annotations

import subprocess
import sys
import textwrap

OPEN_LOGGER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mmlnb_dist.core.sections import TrackingConfig
    from mmlnb_dist.core.tracking.mlflow_logger import MLflowLogger

    out = Path(sys.argv[1])
    tracking = TrackingConfig(log_environment=False)
    ml = MLflowLogger(tracking, f"sqlite:///{out / 'mlflow.db'}", out / "mlartifacts", run_name=sys.argv[2])
    print("ONLINE" if ml.online and ml.run_id else "OFFLINE", flush=True)
    ml.close()
""")


def test_three_processes_creating_one_fresh_store_all_log_to_it(tmp_path):
    tmp_path = tmp_path / "new" / "folder"  # the store's folder is made too, once
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_LOGGER, str(tmp_path), f"run{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    for (out, err), proc in zip(outs, procs):
        assert proc.returncode == 0 and out.strip() == "ONLINE", err[-2000:]
        assert "already exists" not in err, err[-2000:]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mmlnb")
    names = sorted(r.info.run_name for r in client.search_runs([exp.experiment_id]))
    assert names == ["run0", "run1", "run2"]
