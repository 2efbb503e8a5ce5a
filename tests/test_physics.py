"""Physics against slow NumPy float64 references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hnca_env import physics


def np_perceive(x, kernels):
    """Plain loop: correlation with wrap-around, kernel-major output, float64."""
    x = np.asarray(x, np.float64)
    h, w, c = x.shape
    out = np.zeros((h, w, len(kernels) * c))
    for k, ker in enumerate(kernels):
        for y in range(h):
            for xx in range(w):
                for i in range(3):
                    for j in range(3):
                        out[y, xx, k * c : (k + 1) * c] += ker[i, j] * x[(y + i - 1) % h, (xx + j - 1) % w]
    return out


@pytest.mark.parametrize("scale", [1.0, 1.0 / 8.0])
def test_perceive_matches_numpy_with_wraparound(scale):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 9, 3)).astype(np.float32)
    kernels = physics.perception_kernels(("identity", "sobel_x", "sobel_y", "laplacian"), scale)
    want = np_perceive(x, kernels)
    np.testing.assert_allclose(physics.perceive(jnp.asarray(x), kernels), want, atol=1e-5)
    np.testing.assert_allclose(physics.perceive_conv(jnp.asarray(x), kernels), want, atol=1e-5)


def test_perceive_arbitrary_kernels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6, 2)).astype(np.float32)
    kernels = rng.normal(size=(3, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(physics.perceive(jnp.asarray(x), kernels), np_perceive(x, kernels), atol=1e-5)


def test_sobel_orientation():
    # a ramp increasing along x (columns): sobel_x > 0 away from the wrap seam, sobel_y == 0
    x = np.tile(np.arange(8, dtype=np.float32)[None, :, None], (8, 1, 1))
    p = np.asarray(physics.perceive(jnp.asarray(x), physics.perception_kernels(("sobel_x", "sobel_y"))))
    assert np.allclose(p[:, 1:-1, 0], 8.0)  # (1+2+1) * (x+1 - (x-1))
    assert np.allclose(p[..., 1], 0.0)


def test_neighbourhood_is_raw_taps():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5, 2)).astype(np.float32)
    nb = np.asarray(physics.neighbourhood(jnp.asarray(x)))
    for i in range(3):
        for j in range(3):
            tap = np.roll(np.roll(x, 1 - i, axis=0), 1 - j, axis=1)
            np.testing.assert_allclose(nb[..., (3 * i + j) * 2 : (3 * i + j + 1) * 2], tap)


def test_unknown_kernel_raises():
    with pytest.raises(ValueError, match="unknown perception kernel"):
        physics.perception_kernels(("identity", "sobel_z"))


def test_sensor_is_cluster_average():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 12, 3))
    got = np.asarray(physics.sensor(jnp.asarray(x, jnp.float32), 4))
    want = np.zeros((2, 3, 3))
    for py in range(2):
        for px in range(3):
            want[py, px] = x[4 * py : 4 * py + 4, 4 * px : 4 * px + 4].mean(axis=(0, 1))
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        physics.sensor(jnp.zeros((6, 8, 1)), 4)


def test_actuator_writes_only_signal_channels():
    rng = np.random.default_rng(4)
    child = rng.normal(size=(8, 8, 12)).astype(np.float32)
    signal = rng.normal(size=(2, 2, 9)).astype(np.float32)
    out = np.asarray(physics.actuator(jnp.asarray(child), jnp.asarray(signal), 4, 3))
    np.testing.assert_array_equal(out[..., :3], child[..., :3])  # RGB untouched
    for y in range(8):
        for x in range(8):
            np.testing.assert_allclose(out[y, x, 3:], child[y, x, 3:] + signal[y // 4, x // 4], atol=1e-6)
    scaled = np.asarray(
        physics.actuator(jnp.asarray(child), jnp.asarray(signal), 4, 3, "scaled", jnp.full((9,), 0.5))
    )
    np.testing.assert_allclose(scaled[0, 0, 3:], child[0, 0, 3:] + 0.5 * signal[0, 0], atol=1e-6)
    replaced = np.asarray(physics.actuator(jnp.asarray(child), jnp.asarray(signal), 4, 3, "replace"))
    np.testing.assert_array_equal(replaced[..., :3], child[..., :3])
    np.testing.assert_array_equal(replaced[..., 3:], np.repeat(np.repeat(signal, 4, 0), 4, 1))
    with pytest.raises(ValueError, match="unknown multiplexer"):
        physics.multiplex(jnp.zeros(1), jnp.zeros(1), "mean")


def np_alive(x, thr=0.1):
    a = x[..., 3]
    h, w = a.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for xx in range(w):
            m = max(a[(y + i) % h, (xx + j) % w] for i in (-1, 0, 1) for j in (-1, 0, 1))
            out[y, xx] = m > thr
    return out


def test_alive_mask_and_update_match_numpy():
    rng = np.random.default_rng(5)
    x = (rng.random((9, 7, 5)) * (rng.random((9, 7, 1)) > 0.8)).astype(np.float32)
    delta = rng.normal(scale=0.2, size=x.shape).astype(np.float32)
    mask = (rng.random((9, 7, 1)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(physics.alive_mask(jnp.asarray(x)))[..., 0], np_alive(x))
    got = np.asarray(
        physics.stochastic_update(jnp.asarray(x), jnp.asarray(delta), jnp.asarray(mask), alive=True)
    )
    new = x.astype(np.float64) + delta * mask
    want = new * (np_alive(x) & np_alive(new))[..., None]
    np.testing.assert_allclose(got, want, atol=1e-6)
    # without alive masking it is just the residual update
    got = physics.stochastic_update(jnp.asarray(x), jnp.asarray(delta), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(got), new, atol=1e-6)


def test_life_mask_is_the_and_of_two_alive_masks():
    """stochastic_update's pooled min over the stacked pre/post indicators (a83e19f) is exactly
    ``alive_mask(x) & alive_mask(new)``, alpha values at the threshold and a traced threshold
    included, and the update it gives is byte-equal to the and-of-masks formula."""
    rng = np.random.default_rng(11)
    levels = np.array([0.0, 0.05, 0.1, 0.1000001, 0.3], np.float32)  # 0.1: at the threshold
    x = levels[rng.integers(0, 5, (10, 8, 4))]
    new = levels[rng.integers(0, 5, (10, 8, 4))]
    for thr in (0.1, jnp.float32(0.05)):
        life = jax.jit(physics._life)(x[..., 3], new[..., 3], thr)
        want = physics.alive_mask(jnp.asarray(x), thr) & physics.alive_mask(jnp.asarray(new), thr)
        assert life.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(life), np.asarray(want[..., 0], np.float32))
    delta = rng.normal(size=x.shape).astype(np.float32)
    mask = (rng.random((10, 8, 1)) < 0.5).astype(np.float32)
    got = physics.stochastic_update(jnp.asarray(x), jnp.asarray(delta), jnp.asarray(mask), alive=True)
    upd = jnp.asarray(x) + jnp.asarray(delta) * jnp.asarray(mask)
    old = upd * (physics.alive_mask(jnp.asarray(x)) & physics.alive_mask(upd)).astype(jnp.float32)
    assert np.asarray(got).tobytes() == np.asarray(old).tobytes()


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 1.0])
def test_fire_mask_statistics(rate):
    m = np.asarray(physics.fire_mask(jax.random.key(0), (128, 128), rate))
    assert m.shape == (128, 128, 1)
    assert set(np.unique(m)) <= {0.0, 1.0}
    # 16384 Bernoulli draws: 5 standard deviations
    sd = np.sqrt(rate * (1 - rate) / m.size)
    assert abs(m.mean() - rate) <= 5 * sd + 1e-9


def test_circle_mask_wraps():
    m = np.asarray(physics.circle_mask((10, 10), jnp.array([0, 0]), 1.5))
    assert m[0, 0] and m[9, 9] and m[1, 9] and not m[5, 5]
    assert m.sum() == 9


def test_hash_uniform_statistics_and_determinism():
    k = jax.random.key(0)
    u = np.asarray(physics.hash_uniform(k, (64, 64, 12)), np.float64)
    assert u.dtype == np.float64 and u.shape == (64, 64, 12)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - np.sqrt(1 / 12)) < 0.01
    np.testing.assert_array_equal(u, np.asarray(physics.hash_uniform(k, (64, 64, 12))))
    v = np.asarray(physics.hash_uniform(jax.random.key(1), (64, 64, 12)), np.float64)
    assert abs(np.corrcoef(u.ravel(), v.ravel())[0, 1]) < 0.02  # other keys: uncorrelated
    assert abs(np.corrcoef(u.ravel()[:-1], u.ravel()[1:])[0, 1]) < 0.02  # neighbours too
    hist = np.histogram(u, bins=16, range=(0, 1))[0] / u.size
    np.testing.assert_allclose(hist, 1 / 16, atol=0.005)


def test_random_hole_and_cut_against_a_numpy_disc():
    """The one damage routine: a wrapped disc at an integer cell (or in the middle half, for
    the trainer), radius in range; ``cut`` zeroes every channel under it."""
    for seed in range(5):
        key = jax.random.key(seed)
        hole = np.asarray(physics.random_hole(key, (12, 10), (2.0, 4.0)))
        kc, kr = jax.random.split(key)
        cy, cx = (int(v) for v in jax.random.randint(kc, (2,), 0, jnp.array([12, 10])))
        r = float(jax.random.uniform(kr, (), minval=2.0, maxval=4.0))
        want = np.zeros((12, 10), bool)
        for y in range(12):
            for x in range(10):
                dy, dx = min(abs(y - cy), 12 - abs(y - cy)), min(abs(x - cx), 10 - abs(x - cx))
                want[y, x] = dy * dy + dx * dx <= r * r
        np.testing.assert_array_equal(hole, want)
        middle = np.argwhere(np.asarray(physics.random_hole(key, (40, 40), (0.05, 0.2), (0.25, 0.75), 40)))
        assert middle.size and 10 - 8 <= middle.mean(0).min() and middle.mean(0).max() <= 30 + 8
    cells = jnp.ones((12, 10, 3))
    out = np.asarray(physics.cut(cells, jnp.asarray(want)))
    assert (out[want] == 0).all() and (out[~want] == 1).all()
