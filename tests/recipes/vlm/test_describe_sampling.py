"""Sampled descriptions (`vlm.generation.preset: authors`) are reproducible and batch-independent: every image
draws its tokens with the Gumbel-max trick from noise seeded by its own processed pixels and the token position, so
a rerun, `describe` on any number of ranks, another `vlm.generation.batch_size`, a resumed describe and `predict
--vlm` write the same text for the same image, while the caller's random state is left alone. In-process,
seconds (the random tiny VLM; the distribution checks need no model)."""
from __future__ import annotations

import io

import numpy as np

from support.vlm import noise_images

PROMPT = "You are a specialized pathologist, please describe what you see microscopically."


def test_sampling_is_seeded_by_the_images_and_leaves_the_global_rng_alone(tiny_56_112):
    import torch

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import GenerationConfig

    model, proc = tiny_56_112
    gen = GenerationConfig(preset="authors", max_new_tokens=12)
    images = noise_images(0)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = V.generate_descriptions(model, proc, images, PROMPT, gen)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream did not move
    torch.manual_seed(999)  # another global state: the same descriptions
    assert V.generate_descriptions(model, proc, images, PROMPT, gen) == first
    as_bytes = []
    for im in images:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        as_bytes.append(buf.getvalue())
    assert V.generate_descriptions(model, proc, as_bytes, PROMPT, gen) == first  # bytes or PIL: same pixels
    greedy = V.generate_descriptions(model, proc, images, PROMPT, GenerationConfig(max_new_tokens=12))
    assert first != greedy  # it does sample
    other = V.generate_descriptions(model, proc, noise_images(1), PROMPT, gen)
    assert other != first


def test_a_sampled_description_does_not_depend_on_the_batch_it_was_generated_in(tiny_56_112):
    """Batch of 4 == [2, 2] == 4 x 1 (what 2 ranks, another batch_size or a re-batching resume do), and an image
    keeps its text beside a larger image whose longer prompt left-pads it."""
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import GenerationConfig

    model, proc = tiny_56_112
    gen = GenerationConfig(preset="authors", max_new_tokens=12)
    images = noise_images(2, n=4)
    whole = V.generate_descriptions(model, proc, images, PROMPT, gen)
    halves = V.generate_descriptions(model, proc, images[:2], PROMPT, gen) + \
        V.generate_descriptions(model, proc, images[2:], PROMPT, gen)
    single = [V.generate_descriptions(model, proc, [im], PROMPT, gen)[0] for im in images]
    assert whole == halves == single
    assert len(set(single)) == 4, single  # every image its own text: a mix-up of rows would show
    large = noise_images(3, n=1, size=112)[0]
    batch = V.generation_batch(proc, [images[0], large], PROMPT)
    assert (batch["attention_mask"][0] == 0).sum() > 0  # the small image's prompt really is left-padded
    assert V.generate_descriptions(model, proc, [images[0], large], PROMPT, gen)[0] == single[0]


def _counts(winners: np.ndarray, vocab: int) -> np.ndarray:
    return np.bincount(winners, minlength=vocab)


def _assert_matches(counts: np.ndarray, probs: np.ndarray) -> None:
    """Chi-square goodness of fit over the tokens of non-zero probability (alpha 1e-3: the draws are seeded, so
    the outcome is fixed; the threshold only states how close "matches" is), and never a zero-probability token."""
    from scipy.stats import chi2

    n = counts.sum()
    assert counts[probs == 0].sum() == 0, counts
    live = probs > 0
    expected = n * probs[live]
    stat = float(((counts[live] - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(1 - 1e-3, df=int(live.sum()) - 1), (stat, counts, expected)
    assert np.abs(counts / n - probs).max() < 0.02


def test_gumbel_noise_draws_from_the_softmax_of_the_logits_over_seeds_and_over_steps():
    """argmax(logits + Gumbel noise) is a draw from softmax(logits): over 6,000 image seeds at one step, and over
    6,000 steps of one image; -inf (filtered) tokens are never drawn."""
    import torch

    from mmlnb_dist.recipes.vlm.sampling import GumbelNoise

    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -float("inf"), 1.5, -0.5])
    probs = torch.softmax(logits, dim=0).numpy()
    n = 6000
    prompt = torch.zeros(n, 5, dtype=torch.long)
    over_seeds = GumbelNoise(list(range(n)), prompt_length=5)(prompt, logits.repeat(n, 1).clone())
    _assert_matches(_counts(over_seeds.argmax(dim=1).numpy(), len(logits)), probs)

    one_image = GumbelNoise([12345], prompt_length=5)
    winners = [int(one_image(torch.zeros(1, 5 + step, dtype=torch.long), logits[None].clone()).argmax())
               for step in range(n)]
    _assert_matches(_counts(np.array(winners), len(logits)), probs)


def _reference_probs(logits: np.ndarray, seen: np.ndarray, penalty: float, temperature: float, top_k: int,
                     top_p: float) -> np.ndarray:
    """The authors' sampling distribution by hand: repetition penalty on the tokens seen, temperature, top-k,
    then the smallest set of most likely tokens whose probability reaches top_p."""
    z = logits.astype(np.float64).copy()
    z[seen] = np.where(z[seen] < 0, z[seen] * penalty, z[seen] / penalty)
    z = z / temperature
    keep = np.zeros(len(z), dtype=bool)
    order = np.argsort(-z, kind="stable")[:top_k]
    p = np.exp(z[order] - z[order].max())
    p /= p.sum()
    cut = int(np.searchsorted(np.cumsum(p), top_p) + 1)  # include the token that crosses top_p
    keep[order[:cut]] = True
    out = np.where(keep, np.exp(z - z[keep].max()), 0.0)
    return out / out.sum()


def test_the_authors_pipeline_draws_from_the_authors_distribution_and_ignores_left_padding():
    """The processors built from the `authors` preset (repetition penalty, temperature, top-k, top-p, Gumbel noise)
    draw each token with the probability computed by hand; a left-padded row gets the scores of the same row
    unpadded (the pad token is not penalised for being padding)."""
    import torch

    from mmlnb_dist.recipes.vlm.model import AUTHORS_SAMPLING
    from mmlnb_dist.recipes.vlm.sampling import seeded_sampling

    vocab, n, pad_id = 64, 6000, 0
    logits = torch.from_numpy(np.random.default_rng(0).normal(0.0, 0.6, vocab)).float()
    seen = np.array([3, 7, 11, 40])  # prompt + generated so far: penalised tokens (3 and 7 among the likeliest)
    logits[3], logits[7] = logits.max() + 0.2, -logits.max()
    kwargs = dict(AUTHORS_SAMPLING, max_new_tokens=4, pad_token_id=pad_id)
    out = seeded_sampling(kwargs, image_seeds=list(range(n)), attention_mask=torch.ones(n, 3, dtype=torch.long))
    assert out["do_sample"] is False and out["max_new_tokens"] == 4 and out["repetition_penalty"] is None
    ids = torch.tensor(seen).repeat(n, 1)  # 3 prompt tokens, then one generated
    scores = out["logits_processor"](ids, logits.repeat(n, 1).clone())
    probs = _reference_probs(logits.numpy(), seen, AUTHORS_SAMPLING["repetition_penalty"],
                             AUTHORS_SAMPLING["temperature"], AUTHORS_SAMPLING["top_k"], AUTHORS_SAMPLING["top_p"])
    assert 3 <= int((probs > 0).sum()) < 50  # top-p really cuts (and top-k with it)
    _assert_matches(_counts(scores.argmax(dim=1).numpy(), vocab), probs)

    # Row 0 alone vs row 0 beside a longer prompt (left-padded by 2 pad tokens): the same scores, noise included.
    alone = seeded_sampling(kwargs, image_seeds=[5], attention_mask=torch.ones(1, 3, dtype=torch.long))
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    padded = seeded_sampling(kwargs, image_seeds=[5, 6], attention_mask=mask)
    row = torch.tensor([[9, 12, 13, 20]])  # prompt 9 12 13, one token generated
    batch = torch.tensor([[pad_id, pad_id, 9, 12, 13, 20], [1, 2, 3, 4, 5, 21]])
    raw = logits.clone()
    raw[pad_id] = logits.max() + 0.1  # the pad token is likely: penalising it would change the draw
    expected = alone["logits_processor"](row, raw[None].clone())[0]
    assert torch.equal(padded["logits_processor"](batch, raw.repeat(2, 1).clone())[0], expected)
