"""Trivial answers (hnca_env.baselines) against hand computations in NumPy float64."""

import jax
import numpy as np
import pytest

import hnca_env
from hnca_env import baselines


def _tiny_rgba():
    """6×6 premultiplied RGBA: a 2×2 opaque block of two colours and one half-covered pixel."""
    t = np.zeros((6, 6, 4), np.float32)
    t[1:3, 1:3] = [0.8, 0.2, 0.0, 1.0]
    t[1, 1] = [0.0, 0.6, 0.4, 1.0]
    t[4, 4] = [0.1, 0.1, 0.1, 0.4]  # alpha < 0.5: not in the silhouette
    return t


def test_silhouette_and_its_mean_colour():
    t = _tiny_rgba()
    m = np.zeros((6, 6), bool)
    m[1:3, 1:3] = True
    np.testing.assert_array_equal(np.asarray(baselines.silhouette(t)), m)
    mean = t[m].astype(np.float64).mean(axis=0)  # (3 × [0.8, 0.2, 0, 1] + [0, 0.6, 0.4, 1]) / 4
    np.testing.assert_allclose(mean, [0.6, 0.3, 0.1, 1.0], atol=1e-7)
    img = np.asarray(baselines.silhouette_image(t))
    np.testing.assert_allclose(img[m], np.broadcast_to(mean, (4, 4)), atol=1e-6)
    assert not img[~m].any()
    # an RGB target has no alpha: every pixel is in the silhouette
    assert bool(np.asarray(baselines.silhouette(t[..., :3])).all())


def test_disc_has_the_silhouettes_area_and_centroid():
    t = np.zeros((20, 20, 4), np.float32)
    t[4:12, 6:14] = [0.5, 0.25, 0.0, 1.0]  # an 8×8 square: area 64, centroid at pixel (7.5, 9.5)
    img = np.asarray(baselines.disc_image(t))
    yy, xx = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    r = np.sqrt(64 / np.pi)
    disc = (yy - 7.5) ** 2 + (xx - 9.5) ** 2 <= r**2
    painted = img[..., 3] > 0
    np.testing.assert_array_equal(painted, disc)
    np.testing.assert_allclose(img[disc], np.broadcast_to([0.5, 0.25, 0.0, 1.0], (disc.sum(), 4)), atol=1e-6)
    assert abs(int(disc.sum()) - 64) <= 8  # a pixelated disc of area 64


def test_normalised_mse_by_hand():
    rng = np.random.default_rng(0)
    b = rng.uniform(size=(5, 7, 3))
    var = np.mean([np.var(b[..., c]) for c in range(3)])
    assert baselines.normalised_mse(0.25 * var, b) == pytest.approx(0.25)
    mean_img = np.broadcast_to(b.reshape(-1, 3).mean(0), b.shape)
    assert baselines.normalised_mse(np.mean((mean_img - b) ** 2), b) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="constant"):
        baselines.normalised_mse(0.1, np.ones((3, 3, 3)))


def test_answer_mse_on_grow_equals_numpy():
    env, params = hnca_env.make("Grow-v0", grid=(16, 16), target="heart", target_size=10)
    target = np.asarray(params.target, np.float64)
    for answer, image in (
        (baselines.silhouette_answer, baselines.silhouette_image(params.target)),
        (baselines.disc_answer, baselines.disc_image(params.target)),
        (baselines.mean_colour_answer, np.broadcast_to(target.reshape(-1, 4).mean(0), target.shape)),
    ):
        got = baselines.evaluate_answer(env, answer, jax.random.key(0), params, n_worlds=4)
        want = np.mean((np.asarray(image, np.float64) - target) ** 2)
        assert got["mse"] == pytest.approx(want, rel=1e-5)
    # showing the target itself scores 0
    exact = baselines.evaluate_answer(env, baselines.image_answer(params.target), jax.random.key(0), params)
    assert exact["mse"] == pytest.approx(0.0, abs=1e-7)


def test_answer_shape_is_checked():
    env, params = hnca_env.make("Grow-v0", grid=(16, 16))
    bad = baselines.image_answer(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="answer must be"):
        baselines.evaluate_answer(env, bad, jax.random.key(0), params, n_worlds=2)
    with pytest.raises(ValueError, match="n_worlds"):
        baselines.evaluate_answer(env, bad, jax.random.key(0), params, n_worlds=0)


def test_tasks_table_scores_the_mosaic_answer_and_merges_runs():
    """benchmarks/tasks.py: the Mosaic tasks' trivial answer is every child showing the mean of
    the two colours; ``--merge`` keeps an earlier run's rows of the tasks not run now, marked
    with the run they came from, in the table's order."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import tasks as tasks_bench

    env, params = hnca_env.make("HNCA3-Mosaic-v0", grid=(16, 16))
    answer = tasks_bench._answers("HNCA3-Mosaic-v0", params, env)["the mean colour"]
    image = np.asarray(answer(None, None, params))
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image[3, 5], np.asarray(params.task_params["colours"]).mean(axis=0))

    row = lambda task, policy: {"task": task, "policy": policy, "metrics": {}}  # noqa: E731
    old = {"environment": {"cpu": "A"}, "config": {"worlds": 32}, "results": [row("Grow", "zero"), row("Mosaic, 3 levels", "zero")]}
    new = {"environment": {"cpu": "B"}, "config": {"worlds": 32}, "results": [row("Mosaic, 3 levels", "random")]}
    merged = tasks_bench.merge(old, new)
    assert [(r["task"], r["policy"]) for r in merged["results"]] == [("Grow", "zero"), ("Mosaic, 3 levels", "random")]
    runs = merged["earlier_runs"]
    assert runs[merged["results"][0]["earlier_run"]]["environment"] == {"cpu": "A"}
    assert "earlier_run" not in merged["results"][1] and merged["environment"] == {"cpu": "B"}
    again = tasks_bench.merge(merged, {**new, "environment": {"cpu": "C"}})  # provenance is kept
    assert [r["environment"]["cpu"] for r in again["earlier_runs"]] == ["A", "B"]
    assert again["earlier_runs"][again["results"][0]["earlier_run"]]["environment"] == {"cpu": "A"}
