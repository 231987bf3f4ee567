"""The rows of benchmarks/gpu_suite.py: fusion training, VLM LoRA fine-tuning, describe, the loader."""
