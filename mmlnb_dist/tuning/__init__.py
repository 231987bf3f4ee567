"""Ray Tune searches over the training recipes.

- `space`: search-space YAML files (`tune/spaces/*.yaml`) -> Ray Tune parameter spaces, applied as
  dotted config overrides (list indices allowed: `fusion.curriculum.phases.1.start_epoch`).
- `trial`: what one trial runs (a fresh Ray Train `TorchTrainer` around a recipe of the recipe table or the
  `vlm-fusion` pipeline, per Ray 2.60).
- `driver`: `run_search(cfg)`: searcher, ASHA, resume, the MLflow parent run, the best config.
"""
