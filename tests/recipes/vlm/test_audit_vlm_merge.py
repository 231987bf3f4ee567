"""Mutation audit of `export-vlm` (recipes/vlm/merge.py): the merged model computes what base + adapter computes
(logits and greedy text, with language and vision LoRA, a fully trained merger and modules_to_save in the adapter),
loads with its processor, and the folder rules hold: an empty `--out` is used, a file is refused, what a killed
export left is not carried into the next, an export that lands while this one waits is not replaced, and the
record names the adapter by its absolute path."""
from __future__ import annotations

import json

import pytest
import torch

from mmlnb_dist.recipes.vlm.merge import MERGED_RECORD, ExportError, merge_and_export

PIX = 56 * 56
PROMPT = "Describe the patch."


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A random adapter touching every kind of trained tensor finetune-vlm saves: LoRA on language projections and
    on the vision blocks, the merger trained in full, and lm_head / embed_tokens as modules_to_save."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.adapter import save_adapter
    from mmlnb_dist.recipes.vlm.config import LoraConfig

    root = tmp_path_factory.mktemp("merge")
    cache = root / "cache"
    base, _ = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=cache)
    lora = LoraConfig(r=2, alpha=5, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"], vision_lora=True,
                      train_merger=True, modules_to_save=["lm_head", "embed_tokens"])
    peft = V.apply_lora(base, lora)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif "modules_to_save" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    trained = {n.split(".modules_to_save.")[0] for n, _ in peft.named_parameters() if "modules_to_save" in n}
    assert any(n.endswith("visual.merger") for n in trained) and any(n.endswith("lm_head") for n in trained)
    save_adapter(peft, root / "run" / "adapter", DistEnv())
    return {"root": root, "cache": cache, "adapter": root / "run" / "adapter"}


def _export(made, out, **kw):
    return merge_and_export("tiny", made["adapter"], out, min_pixels=PIX, max_pixels=PIX, cache_dir=made["cache"],
                            tiny_vision="random", **kw)


def _images():
    from support.vlm import noise_images

    return noise_images(11, n=2) + noise_images(12, n=1, size=112)


def test_the_merged_model_computes_what_base_plus_adapter_computes(made, tmp_path):
    """Logits of a left-padded batch (two image sizes) from the export, loaded as describe loads a model (with its
    saved processor), equal those of the base with the adapter applied unmerged; they differ from the base's; greedy
    descriptions agree."""
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import GenerationConfig

    out = _export(made, tmp_path / "merged")
    merged, processor = V.load_vlm(str(out), min_pixels=PIX, max_pixels=112 * 112)
    base, _ = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=made["cache"])
    with torch.no_grad():
        base_logits = base(**V.generation_batch(processor, _images(), PROMPT)).logits
    unmerged = V.load_adapter(base, made["adapter"]).eval()
    batch = V.generation_batch(processor, _images(), PROMPT)
    assert (batch["attention_mask"] == 0).any()  # the 56 px prompts are left-padded beside the 112 px one
    with torch.no_grad():
        want = unmerged(**batch).logits
        got = merged(**batch).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    real = batch["attention_mask"].bool()
    assert (got[real] - base_logits[real]).abs().max() > 1e-2  # the adapter changes what the model computes
    gen = GenerationConfig(max_new_tokens=6)
    assert V.generate_descriptions(merged, processor, _images(), PROMPT, gen) == \
        V.generate_descriptions(unmerged, processor, _images(), PROMPT, gen)


def test_an_existing_empty_folder_is_used_and_a_file_is_refused(made, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _export(made, empty) == empty
    assert json.loads((empty / MERGED_RECORD).read_text())["adapter"] == str(made["adapter"].resolve())
    afile = tmp_path / "model.bin"
    afile.write_text("not a folder")
    with pytest.raises(ExportError, match=r"is a file; give a folder"):
        _export(made, afile)
    assert afile.read_text() == "not a folder"


def test_what_a_killed_export_left_is_not_carried_into_the_next(made, tmp_path):
    stale = tmp_path / ".merged.export-vlm" / "model"
    stale.mkdir(parents=True)
    # (a name transformers' save_pretrained would not clean up itself, as it does stale weight shards)
    (stale / "preprocessor_notes.txt").write_text("left by a killed export")
    out = _export(made, tmp_path / "merged")
    assert not (out / "preprocessor_notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_an_export_that_lands_while_this_one_starts_is_not_replaced(made, tmp_path, monkeypatch):
    """Between the first look at `--out` and the lock another export may finish there: looked at again under the
    lock, it is refused without --overwrite and left whole."""
    from mmlnb_dist.recipes.vlm import merge as M

    out = tmp_path / "merged"
    record = {"base": "tiny", "adapter": "/elsewhere/adapter", "adapter_sha256": "0" * 64}

    def another_export_lands(name, key):
        out.mkdir()
        (out / MERGED_RECORD).write_text(json.dumps(record))

    monkeypatch.setattr(M, "check_vlm_loadable", another_export_lands)
    with pytest.raises(ExportError, match=r"already holds a merged model of the adapter /elsewhere/adapter"):
        _export(made, out)
    assert json.loads((out / MERGED_RECORD).read_text()) == record and len(list(out.iterdir())) == 1


def test_the_record_names_the_adapter_absolutely_when_given_a_relative_path(made, tmp_path, monkeypatch):
    """`describe --vlm MERGED` finds the fine-tuning run beside the recorded adapter from any working folder."""
    from mmlnb_dist.recipes.vlm.trained_with import training_config_path

    (made["adapter"].parent / "config.yaml").write_text("vlm:\n  prompt: P\n")
    monkeypatch.chdir(made["adapter"].parent.parent)
    out = merge_and_export("tiny", "run/adapter", tmp_path / "merged", min_pixels=PIX, max_pixels=PIX,
                           cache_dir=made["cache"], tiny_vision="random")
    monkeypatch.undo()
    assert json.loads((out / MERGED_RECORD).read_text())["adapter"] == str(made["adapter"].resolve())
    assert training_config_path(str(out), None) == made["adapter"].parent.resolve() / "config.yaml"


def test_an_export_that_starts_as_this_one_ends_keeps_its_staging_folder(made, tmp_path, monkeypatch):
    """The staging folder (and the lock in it) is cleared before the lock is released: cleared after, it deleted the
    lock and half-built model of an export into the same --out that took the lock in that moment."""
    from mmlnb_dist.core.runlock import FolderLock
    from mmlnb_dist.recipes.vlm import merge as M

    staging, taken = tmp_path / ".merged.export-vlm", []

    class NextExportStartsAtRelease(FolderLock):
        def release(self):
            super().release()
            if not taken:  # another `export-vlm --overwrite` into the same folder takes the lock at once
                taken.append(FolderLock(staging, "export-vlm").acquire())
                (staging / "model").mkdir(parents=True)
                (staging / "model" / "half-built").write_text("the next export's")

    monkeypatch.setattr(M, "FolderLock", NextExportStartsAtRelease)
    _export(made, tmp_path / "merged")
    assert (staging / "model" / "half-built").read_text() == "the next export's"
    with pytest.raises(Exception, match="in use by `export-vlm`"):  # the next export still holds it
        FolderLock(staging, "export-vlm").refuse_if_held()
    taken[0].release()
