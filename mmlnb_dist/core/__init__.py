"""The shared core: it knows no recipe, no data format and no model.

    distributed   ranks, the process group, collectives, batch math
    engine        the DeepSpeed engine from a model, an optimizer and a schedule; seeding
    schedule      the learning rate (warmup, constant or cosine; frozen groups at 0): its one owner
    checkpoint    save / resume / retention / best, model-agnostic; consolidated fp32 weights
    recipe        the recipe protocol and the one `run()` every caller uses
    tracking      the metric-logger protocol, MLflow backend, journal and sync, parent runs, the registry
    config        the typed-config machinery; sections: the run, distributed, train and tracking sections
    logging       one console style (stdlib logging, rank 0 inside the logger); errors: UserError, ConfigError
"""
