"""The VLM recipe (MMLNB stage 1): the description model, Qwen2.5-VL with LoRA.

    config.py      the `vlm:` section
    model.py       loading, LoRA, the one chat template, batched generation; tiny_qwen.py the offline test model
    memory.py      the memory plan of the real 7B model on a 24 GB card
    finetune.py    FinetuneVLMRecipe: LoRA fine-tuning under DeepSpeed (checks, setup, loop, checkpoints)
    batches.py     the pairs, their per-step order and seed, their encoding with the one prompt
    adapter.py     saving the adapter (gathered under ZeRO-3; an ungathered parameter is refused)
    describe.py    a description for every sample of a shard set (`data.map_shard_set`), and for raw images
    quality.py     the quality report of generated descriptions (ROUGE-L and BLEU from torchmetrics)
"""
