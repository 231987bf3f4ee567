"""Tracking: the metric-logger protocol and its backends, the MLflow journal and sync, the tracking server,
parent/child runs for searches, and the model registry.

    logger = build_logger(cfg.tracking, cfg.run, env.rank, run_dir, "train", config=cfg, datasets=specs)
    logger.log_metrics({"train/loss": 0.3}, step=10)     # every rank; only rank 0 logs
"""
from .loggers import MetricLogger, MultiLogger, NullLogger, StdoutLogger, build_logger, epoch_summary, recorded_config

__all__ = ["MetricLogger", "MultiLogger", "NullLogger", "StdoutLogger", "build_logger", "epoch_summary",
           "recorded_config"]
