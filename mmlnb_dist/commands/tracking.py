"""`mmlnb-dist mlflow-server`, `tracking sync`, `register` and `predict`."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from ..data.shardset import SPLITS
from . import add_config_args, port_number, positive_int

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mlflow-server", help="start a shared MLflow tracking server bound to 127.0.0.1",
                       description="Runs `mlflow server` in the foreground (Ctrl-C stops it). Point runs at it "
                       "with tracking.uri=http://127.0.0.1:PORT.")
    p.add_argument("--port", type=port_number, default=5000, help="port (default 5000)")
    p.add_argument("--backend-store", default="sqlite:///runs/mlflow.db",
                   help="backend store URI (default sqlite:///runs/mlflow.db, the embedded default's database)")
    p.add_argument("--artifacts-dir", type=Path, default=Path("runs/mlartifacts"),
                   help="where the server keeps artifacts (default runs/mlartifacts)")
    p.add_argument("--host", default="127.0.0.1",
                   help="bind address (default 127.0.0.1; exposing it needs an authenticating proxy)")
    p.set_defaults(func=_server)

    t = sub.add_parser("tracking", help="tracking utilities (sync, import)")
    tsub = t.add_subparsers(dest="tracking_command", metavar="SUBCOMMAND")
    tsub.required = True
    s = tsub.add_parser("sync", help="upload the metrics runs kept on disk while their server was unreachable",
                        description="Finds every MLflow journal (<run folder>/tracking/<stage>.jsonl) in each FOLDER "
                        "or below it (a run folder or a whole runs folder) and sends the events the server has not "
                        "acknowledged into the run recorded beside it (or a new run). A run whose process was killed "
                        "is marked KILLED; a journal a live process is still writing is skipped. Idempotent: only "
                        "what was not sent yet is sent.")
    s.add_argument("run_dirs", nargs="+", type=Path, metavar="FOLDER")
    s.add_argument("--uri", help="tracking URI to upload to (default: the one each run used)")
    s.set_defaults(func=_sync)
    i = tsub.add_parser("import", help="make the MLflow run of a run folder trained without mlflow tracking",
                        description="A run trained with tracking.backends lacking mlflow kept its config "
                        "(config.yaml) and its metrics step by step (metrics.jsonl). This makes its MLflow run from "
                        "them (params, the config as an artifact, every metric at its step, status FINISHED) and "
                        "records it in the folder, so `register --run FOLDER` can register it and a resume with "
                        "mlflow continues it. A folder that already has an MLflow run is refused.")
    i.add_argument("run_dir", type=Path, metavar="FOLDER", help="the run folder (runs/NAME, as `train` prints it)")
    i.add_argument("--stage", default="train", help="the folder's stage to import (default train)")
    i.add_argument("--uri", help="tracking URI (default: the run's tracking.uri, else the SQLite store beside the "
                   "run folder, where training would have logged)")
    i.set_defaults(func=_import)

    r = sub.add_parser("register", help="register a trained classifier in the MLflow Model Registry",
                       description="Logs the run's export as a pyfunc model, registers it under --name and moves "
                       "--alias to it only if --metric beats the current holder's.")
    r.add_argument("--run", required=True, metavar="RUN",
                   help="a training run: its run folder (runs/NAME, as `train` prints it: the run id and the "
                   "tracking store come from its tracking record, the model from its export) or its MLflow run id")
    r.add_argument("--name", default="mmlnb-nb", help="registered model name (default mmlnb-nb)")
    r.add_argument("--alias", default="champion", help="alias to move when the metric improves ('' for none)")
    r.add_argument("--metric", default=None,
                   help="metric deciding the alias (default tracking.register_metric of --config, else "
                   "best/val/<train.best_metric> the run trained with: the exported checkpoint's, falling back to "
                   "val/<metric>; fusion's default best/val/balanced_accuracy)")
    r.add_argument("--mode", choices=["max", "min"], default=None,
                   help="higher (max) or lower (min) is better (default: min for the recipe's lower-is-better metrics "
                   "such as loss, else max)")
    r.add_argument("--export", type=Path, help="model folder (default: the recipe's export in the run folder); it "
                   "must be the run's own: its export folder or a copy of it (another run's export is refused)")
    r.add_argument("--recipe", default=None,
                   help="recipe that trained the run (default: the run's own train.recipe, else --config's)")
    r.add_argument("--uri", help="tracking URI (default: a run folder's own store; else from --config / the "
                   "embedded SQLite store)")
    add_config_args(r)
    r.set_defaults(func=_register)

    q = sub.add_parser("predict", help="predict subtypes (fusion) or label sets (clip) with a registered model",
                       description="Images, image folders, shard folders (manifest.json), .tar shards or a shard's "
                       "sample (<tar>:<key>, as the source column names it) in; CSV or JSONL out, with per-slide "
                       "aggregates when slide ids are known. A multi-label model "
                       "gives every label's probability and a label set (its top k, --top-k or --threshold); its "
                       "slide aggregates are mean probabilities per label. Interrupted, the same command resumes "
                       "after the last finished chunk (journaled in <out>.resume/). <out>.model.json records "
                       "the model that wrote the predictions. Exit 1 when some "
                       "inputs could not be read (the rest still get results), 2 when the model is missing.")
    q.add_argument("inputs", nargs="+", metavar="IMAGES_OR_SHARDS")
    q.add_argument("--model", required=True, help="model URI, e.g. models:/mmlnb-nb@champion, or a model folder")
    q.add_argument("--out", type=Path, required=True, help="preds.csv or preds.jsonl")
    q.add_argument("--descriptions", type=Path,
                   help="CSV/JSONL naming each image (a key, path, image or file column; paths relative to the "
                   "file, or tails of the paths given) with its description; with --vlm, which writes the "
                   "descriptions, a labels table (file, label, slide_id) read for its slide ids")
    q.add_argument("--description-column", default="description", metavar="NAME",
                   help="column of --descriptions holding the text (default description; e.g. caption)")
    q.add_argument("--slide-column", default=None, metavar="NAME",
                   help="column of --descriptions holding the slide id, for per-slide aggregates (default slide_id "
                   "when present)")
    q.add_argument("--vlm", help="generate descriptions with this VLM (name/path, or 'tiny')")
    q.add_argument("--adapter", type=Path, help="LoRA adapter folder for --vlm")
    q.add_argument("--split", choices=SPLITS, help="shard split to read from shard folders (default: all splits)")
    q.add_argument("--batch-size", type=positive_int, default=32)
    q.add_argument("--chunk-size", type=positive_int, default=None, metavar="N",
                   help="inputs decoded, described, predicted and journaled at a time (default 256, "
                   "predict.PREDICT_CHUNK): memory holds one chunk's images, and a killed job redoes at most one")
    q.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                   help="multi-label models: predict the K most probable labels (default: the model's own k)")
    q.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="multi-label models: predict every label with probability >= T (instead of the top k)")
    q.add_argument("--uri", help="tracking URI for models:/ URIs (default: the embedded SQLite store)")
    add_config_args(q)
    q.set_defaults(func=_predict)


def _tracking_uri(args, cfg) -> str:
    from ..core.tracking.server import default_tracking_uri

    return _given_uri(args.uri) if args.uri else default_tracking_uri(cfg.tracking, cfg.run.output_dir)


def _given_uri(uri: str) -> str:
    """`--uri` checked as tracking.uri is (a malformed one was a SQLAlchemy or MLflow traceback, after `tracking
    import` had written the folder's journal), a relative SQLite path made absolute."""
    from ..core.errors import UserError
    from ..core.sections import refuse_malformed_tracking_uri
    from ..core.tracking.server import absolute_sqlite_uri

    try:
        return absolute_sqlite_uri(refuse_malformed_tracking_uri(uri))
    except ValueError as err:
        raise UserError(f"--uri: {err}") from None


def _server(args) -> int:
    from ..core.errors import UserError
    from ..core.sections import refuse_malformed_tracking_uri
    from ..core.tracking import server

    try:  # as tracking.uri is checked: MLflow's own refusal is a traceback from the server, after it started
        args.backend_store = server.lower_scheme(refuse_malformed_tracking_uri(args.backend_store))
    except ValueError as err:
        raise UserError(f"--backend-store: {err}") from None
    server.require_free_port(args.host, args.port)
    store = server.sqlite_store(args.backend_store)
    for flag, folder in (("--artifacts-dir", args.artifacts_dir), ("--backend-store", store and store.parent)):
        try:  # a path under a file was a FileExistsError traceback
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"{flag}: cannot make the folder {folder} ({err.strerror}: {err.filename}); give a "
                            f"path whose folders are folders you can write") from None
    poll_host, shown_host = server.client_host(args.host)
    uri = server.http_uri(shown_host, args.port)
    if server.exposed(args.host):
        log.warning("--host %s: this MLflow server has no authentication; anyone who can reach %s can read, change "
                    "and delete every run and model in %s. Keep the default 127.0.0.1 unless a firewall or an "
                    "authenticating proxy guards it", args.host, uri, args.backend_store)
    cmd = server.server_command(args.port, args.backend_store, args.artifacts_dir, host=args.host)
    return server.serve_foreground(cmd, server.http_uri(poll_host, args.port), f"MLflow server on {uri} (store "
                                   f"{args.backend_store}, artifacts {args.artifacts_dir}); use tracking.uri={uri}")


def _sync(args) -> int:
    from ..core.errors import UserError
    from ..core.tracking.journal import JOURNAL_DIR, find_journals, sync_run_dir

    failed = 0
    uri = _given_uri(args.uri) if args.uri else None  # the store this folder means, wherever it is read
    for path in args.run_dirs:  # a journal named itself found nothing in it: its run folder is what is synced
        if path.is_file() and path.suffix == ".jsonl" and path.parent.name == JOURNAL_DIR:
            raise UserError(f"{path} is a journal: sync its run folder, `mmlnb-dist tracking sync "
                            f"{shlex.quote(str(path.parent.parent))}` (only what was not sent is sent)")
        if not path.exists():
            raise UserError(f"{path}: no such folder (give run folders or a runs folder); nothing was sent")
        if path.is_file():  # a run's config.yaml or metrics.jsonl: "no journal in FILE" read as an empty folder
            raise UserError(f"{path} is a file, not a run folder: sync the folder it is in, `mmlnb-dist tracking "
                            f"sync {shlex.quote(str(path.parent))}` (or a runs folder); nothing was sent")
    empty = [str(folder) for folder in args.run_dirs if not find_journals(folder)]
    if empty:  # before anything is sent: a typo among several folders stopped the sync halfway
        raise UserError(f"no MLflow journal in {', '.join(empty)} (expected <run folder>/{JOURNAL_DIR}/<stage>.jsonl "
                        f"in it or in a folder below it); nothing was sent")
    for folder in args.run_dirs:
        results = sync_run_dir(folder, uri=uri)
        for res in results:
            if res.get("error"):
                print(f"{res['journal']}: {res['error']}", file=sys.stderr)
                failed += 1
            elif res.get("skipped"):
                print(f"{res['journal']}: skipped ({res['skipped']})")
            else:
                how = "created run" if res["created"] else "run"
                print(f"{res['journal']}: sent {res['sent']} event(s) to {how} {res['run_id']} at {res['uri']}")
    return 1 if failed else 0


def _import(args) -> int:
    from ..core.tracking.folder_import import import_run_folder

    result = import_run_folder(args.run_dir, args.stage, _given_uri(args.uri) if args.uri else None)
    print(f"{args.run_dir}: MLflow run {result['run_id']} at {result['uri']} ({result['sent']} event(s)); register "
          f"it: mmlnb-dist register --run {shlex.quote(str(args.run_dir))} --name NAME")
    return 0


def _register(args) -> int:
    from ..core.errors import UserError
    from ..core.tracking.journal import unsent_events
    from ..core.tracking.metric_name import require_metric
    from ..core.tracking.ownership import check_export_owner
    from ..core.runlock import FolderLock
    from ..core.tracking.registry import find_run
    from ..recipes import load_class, spec_for
    from . import load_from_args

    _refuse_registry_names(args.name, args.alias)
    if args.uri:
        _given_uri(args.uri)
    if args.export is not None and not args.export.is_dir():  # was a FileNotFoundError from the ownership check
        raise UserError(f"--export {args.export}: {'not a folder' if args.export.exists() else 'no such folder'} "
                        f"(the model folder: <run folder>/export, or a copy of it)")
    inside = Path(args.run)
    if inside.is_dir() and not (inside / "tracking").is_dir() and (inside.parent / "tracking" / "train.json").is_file():
        raise UserError(f"--run {inside} is a folder inside the run {inside.parent} (its export or checkpoints); "
                        f"give the run folder: --run {inside.parent}")
    cfg = load_from_args(args)
    target = find_run(args.run, _tracking_uri(args, cfg), uri_given=args.uri is not None)
    if target.run_dir is not None and target.run_dir.is_dir():  # a live job's export may be half written or stale
        FolderLock(target.run_dir, "register").refuse_if_held()
        # a server lost mid-run: the store lacks the run's last metrics and its end, which its journal holds
        unsent = unsent_events(target.run_dir, "train", target.run_id, target.tracking_uri)
        if unsent:
            folder = shlex.quote(str(target.run_dir))
            raise UserError(f"run {target.run_id} at {target.tracking_uri}: its journal ({target.run_dir}/tracking/"
                            f"train.jsonl) holds {unsent} event(s) the store has not received (the tracking server "
                            f"was lost during the run); send them, then register: `mmlnb-dist tracking sync "
                            f"{folder}`")
    target.refuse_unfinished()  # after the lock: a live job's run is "in use", not "RUNNING"
    # the run's own recipe and selection metric unless the flags say otherwise: a clip run registers as clip
    # without --config, and a run trained with another train.best_metric is judged on it
    recipe = args.recipe or target.params.get("train.recipe") or cfg.train.recipe
    spec = spec_for(recipe, "--recipe")
    if not spec.register:
        raise UserError(f"the {spec.name} recipe has no model to register")
    metric, mode = _selection(args, cfg, spec, target.params.get("train.best_metric"))
    require_metric(target.metrics, metric, target.run_id,  # a typo would freeze the alias: refused by name
                   "--metric" if args.metric else "tracking.register_metric" if cfg.tracking.register_metric
                   else "the run's selection metric (best/val/<train.best_metric>)")
    if args.export is not None:  # another run's weights under this run's metrics and lineage: refused by name
        check_export_owner(target.run_id, target.run_dir, args.export)
    register = load_class(spec.register)
    res = register(target.run_id, args.name, alias=args.alias or None, tracking_uri=target.tracking_uri,
                   metric=metric, mode=mode, model_dir=args.export or target.export_dir)
    print(f"registered {res.name} version {res.version}: {res.reason}")
    if res.alias_moved:
        print(f"models:/{res.name}@{res.alias} -> version {res.version}")
    return 0


def _refuse_registry_names(name: str, alias: str) -> None:
    """The model name and alias MLflow's registry refuses, named by flag before any work (they were an MLflow
    traceback once the run had been found and checked); the rule is `tracking.register_name`'s and
    `tracking.register_alias`'s."""
    from ..core.errors import UserError
    from ..core.sections import refuse_registry_alias, refuse_registry_name

    for flag, value, check in (("--name", name, lambda v: refuse_registry_name(v, "--name ")),
                               ("--alias", alias, refuse_registry_alias)):
        try:
            check(value)
        except ValueError as err:
            raise UserError(f"{flag} {value!r}: {err}") from None


def _selection(args, cfg, spec, run_best_metric=None):
    """The metric and mode that decide the alias: the flags, else the config's tracking.register_metric, else
    `best/val/<the run's own train.best_metric>` (a clip run selects on its micro_f1, not the fusion default);
    for a run that recorded none, the config's train.best_metric."""
    from ..core.errors import UserError
    from ..core.tracking.registry import metric_mode

    metric = args.metric or cfg.tracking.register_metric
    if metric is None:
        best = run_best_metric
        if best is None:
            if cfg.train.recipe != spec.name:
                raise UserError(f"--metric: --recipe {spec.name} differs from the config's train.recipe "
                                f"({cfg.train.recipe}); pass --metric (e.g. best/val/{spec.metrics[0]}) or the "
                                f"run's --config")
            best = cfg.train.best_metric
        metric = f"best/val/{best}"
    mode = args.mode or (args.metric is None and cfg.tracking.register_metric and cfg.tracking.register_mode) \
        or metric_mode(metric, spec.lower_is_better)
    return metric, mode


def _sets_vlm(overrides) -> bool:
    """Whether key=value overrides set VLM settings (else, with no --config, the defaults are no given config)."""
    return any(o.split("=", 1)[0].startswith(("vlm.", "distributed.precision")) for o in overrides or ())


def _predict(args) -> int:
    from ..predict import predict_to_file
    from ..predict.agreement import agreement_lines
    from ..predict.provenance import model_record_file
    from . import load_from_args

    cfg = load_from_args(args)
    report = predict_to_file(args.model, list(args.inputs), args.out, descriptions=args.descriptions,
                             vlm=args.vlm, adapter=args.adapter, split=args.split, batch_size=args.batch_size,
                             top_k=args.top_k, threshold=args.threshold, description_column=args.description_column,
                             slide_column=args.slide_column, tracking_uri=_tracking_uri(args, cfg),
                             # key=value without --config too (vlm.generation.batch_size=N: the OOM remedy)
                             vlm_config=cfg if args.config or _sets_vlm(args.overrides) else None,
                             **({"chunk_size": args.chunk_size} if args.chunk_size is not None else {}))
    skipped = report["skipped_out"]
    print(f"{report['predicted']} prediction(s) -> {args.out}"
          + (f" ({report['resumed']} input(s) done by the interrupted run it resumed)" if report["resumed"] else "")
          + f"; model record -> {model_record_file(Path(report['out']))}"
          + (f"; per-slide aggregates -> {report['slides_out']}" if report.get("slides_out") else "")
          + (f"; {len(report['failed'])} unreadable input(s) -> {skipped}" if skipped else ""))
    for line in agreement_lines(report["agreement"]):  # labelled shards: how the predictions agree with them
        print(line)
    for warning in report["warnings"]:
        print(f"WARNING [predict] {warning}", file=sys.stderr)
    for item, reason in report["failed"]:
        print(f"unreadable: {item}: {reason}", file=sys.stderr)
    if report["failed"]:
        print(f"{len(report['failed'])} input(s) could not be read (listed with the reasons in {skipped})",
              file=sys.stderr)
        return 1
    return 0

