"""The physics of one NCA level and of the links between levels.

Every function here works on one world: a grid ``(H, W, C)`` of float32 cell states on a
torus (circular padding everywhere). Batching is ``jax.vmap``; nothing here has a batch axis.

The parts, each small and swappable (the shape of CAX's perceive/update split):

- :func:`perceive` — fixed depthwise 3×3 kernels per channel (identity, Sobel-x, Sobel-y,
  Laplacian), computed from shifted slices of the wrapped grid (faster than ``lax.conv`` on
  CPU; see ``benchmarks/throughput.py``), output ``(H, W, K*C)`` kernel-major.
- :func:`neighbourhood` — the raw 3×3 neighbourhood ``(H, W, 9*C)``, for learnt perception.
- :func:`fire_mask` — the per-cell (not per-channel) Bernoulli update mask.
- :func:`alive_mask` — Growing-NCA living-cell mask (3×3 max of alpha > threshold).
- :func:`stochastic_update` — ``s + Δ·m`` with optional alive masking before and after.
- :func:`sensor` — child → parent: ``k×k`` average pool.
- :func:`upsample` / :func:`actuator` — parent → child: nearest upsampling into the child's
  signal channels only, mixed by a :func:`multiplex` rule (adder, scaled or replace).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Named 3×3 perception kernels, indexed ``[row (y), col (x)]`` and applied as a
#: cross-correlation: ``out[y, x] = Σ k[i, j] · s[y+i-1, x+j-1]`` (as TF's depthwise conv,
#: which Growing NCA and the H-NCA reference use). Sobel kernels are unscaled here;
#: :func:`perception_kernels` applies the Sobel scale.
KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32),
    "sobel_x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
    "sobel_y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32),
    "laplacian": np.array([[1, 2, 1], [2, -12, 2], [1, 2, 1]], np.float32),
}

#: The signal mixing rules of the multiplexer.
MULTIPLEXERS = ("adder", "scaled", "replace")


def perception_kernels(names: Sequence[str], sobel_scale: float = 1.0) -> np.ndarray:
    """Stack named kernels into ``(K, 3, 3)``; Sobel kernels are multiplied by ``sobel_scale``.

    ``sobel_scale=1/8`` gives Growing NCA's perception, ``1.0`` the H-NCA reference's.
    """
    names = tuple(names)
    if not names:
        raise ValueError("perception needs at least one kernel")
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise ValueError(f"unknown perception kernel(s) {unknown}; known: {sorted(KERNELS)}")
    out = []
    for n in names:
        k = KERNELS[n].copy()
        if n.startswith("sobel"):
            k = k * np.float32(sobel_scale)
        out.append(k)
    return np.stack(out).astype(np.float32)


def wrap_pad(x: Array) -> Array:
    """Pad ``(H, W, C)`` by one cell on each side with torus wrap-around: ``(H+2, W+2, C)``."""
    return jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode="wrap")


def _shift(xp: Array, i: int, j: int, h: int, w: int) -> Array:
    """The slice of the wrapped grid whose cell (y, x) holds ``s[y+i-1, x+j-1]``."""
    return jax.lax.slice(xp, (i, j, 0), (i + h, j + w, xp.shape[2]))


def perceive(x: Array, kernels: np.ndarray) -> Array:
    """Depthwise 3×3 perception with circular padding.

    Args:
      x: cell states ``(H, W, C)``.
      kernels: concrete ``(K, 3, 3)`` NumPy array (static; zero taps are skipped).

    Returns:
      ``(H, W, K*C)``, kernel-major: ``out[..., k*C + c]`` is kernel ``k`` on channel ``c``.
    """
    kernels = np.asarray(kernels, np.float32)
    if kernels.ndim != 3 or kernels.shape[1:] != (3, 3):
        raise ValueError(f"kernels must have shape (K, 3, 3), got {kernels.shape}")
    h, w, _ = x.shape
    xp = wrap_pad(x)
    outs = []
    for k in kernels:
        acc = None
        for i in range(3):
            for j in range(3):
                wgt = float(k[i, j])
                if wgt == 0.0:
                    continue
                term = _shift(xp, i, j, h, w)
                if wgt != 1.0:
                    term = term * wgt
                acc = term if acc is None else acc + term
        outs.append(jnp.zeros_like(x) if acc is None else acc)
    return jnp.concatenate(outs, axis=-1)


def perceive_conv(x: Array, kernels: np.ndarray | Array) -> Array:
    """The same perception as :func:`perceive`, as one grouped ``lax.conv`` (for comparison).

    Accepts traced kernels, so it also serves learnt perception.
    """
    c = x.shape[-1]
    k = jnp.asarray(kernels, jnp.float32)
    n_k = k.shape[0]
    # HWIO with feature_group_count=C: output channel index = c*K + k (channel-major).
    rhs = jnp.tile(jnp.transpose(k, (1, 2, 0))[:, :, None, :], (1, 1, 1, c))
    y = jax.lax.conv_general_dilated(
        wrap_pad(x)[None],
        rhs,
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )[0]
    h, w = x.shape[:2]
    # reorder channel-major (c, k) into kernel-major (k, c)
    return y.reshape(h, w, c, n_k).transpose(0, 1, 3, 2).reshape(h, w, n_k * c)


def neighbourhood(x: Array) -> Array:
    """The raw wrapped 3×3 neighbourhood of every cell: ``(H, W, 9*C)``.

    Tap-major: ``out[..., (3*i + j)*C + c] = s[y+i-1, x+j-1, c]``. A policy that applies a
    learnt linear map to this learns its own perception kernels.
    """
    h, w, _ = x.shape
    xp = wrap_pad(x)
    return jnp.concatenate([_shift(xp, i, j, h, w) for i in range(3) for j in range(3)], -1)


def _lowbias32(x: Array) -> Array:
    """A 32-bit integer mixing hash (C. Wellons' "lowbias32"): a few multiply/xor-shifts."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def hash_uniform(key: Array, shape: tuple[int, ...]) -> Array:
    """U[0, 1) float32 noise of ``shape`` from one key: a keyed integer hash of the index.

    For seeds drawn at every reset: under ``vmap`` gymnax-style auto-reset computes a reset on
    every step, and ``jax.random.uniform`` (threefry) of a 128×128×12 seed cost 7× more than
    this on the CPU (benchmarks/). One threefry draw gives the 32-bit key; each element is
    ``hash(hash(index) ^ key)``, 24 bits of mantissa. Deterministic per key; not for
    cryptography, and not bit-equal to ``jax.random.uniform``.
    """
    seed = jax.random.bits(key, (), jnp.uint32)
    size = int(np.prod(shape)) if shape else 1
    idx = jax.lax.iota(jnp.uint32, size).reshape(shape)
    x = _lowbias32(_lowbias32(idx) ^ seed)
    return (x >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


def fire_mask(key: Array, shape: tuple[int, int], fire_rate: float | Array) -> Array:
    """Per-cell Bernoulli(fire_rate) update mask, float32 ``(H, W, 1)``."""
    return jax.random.bernoulli(key, fire_rate, shape).astype(jnp.float32)[..., None]


def max_pool3(a: Array) -> Array:
    """3×3 max over the wrapped neighbourhood of a ``(H, W)`` map.

    ``lax.reduce_window`` rather than a max of shifted slices: XLA on CPU otherwise fuses the
    slices into every read of the perception that follows, recomputing them (measured 2.9×
    slower for the perception of an alive-masked state; see docs/benchmarks.md).
    """
    ap = jnp.pad(a, 1, mode="wrap")
    return jax.lax.reduce_window(ap, -jnp.inf, jax.lax.max, (3, 3), (1, 1), "VALID")


def alive_mask(x: Array, threshold: float | Array = 0.1, alpha_channel: int = 3) -> Array:
    """Growing-NCA living mask ``(H, W, 1)`` bool: 3×3 max of the alpha channel > threshold."""
    return (max_pool3(x[..., alpha_channel]) > threshold)[..., None]


def stochastic_update(
    x: Array,
    delta: Array,
    mask: Array,
    *,
    alive: bool = False,
    alive_threshold: float | Array = 0.1,
    alpha_channel: int = 3,
) -> Array:
    """``x + delta * mask``; with ``alive``, cells dead before or after the update are zeroed.

    This is Growing NCA's update: life is judged on the state before and after the update,
    and a cell survives only if alive at both times.
    """
    new = x + delta * mask
    if alive:
        new = new * _life(x[..., alpha_channel], new[..., alpha_channel], alive_threshold)[..., None]
    return new


def _life(before: Array, after: Array, threshold: float | Array) -> Array:
    """``alive_mask`` of both alpha maps ``(H, W)``, and-ed, as float32 ``(H, W)`` 0/1.

    The same mask as ``alive_mask(x) & alive_mask(new)``, computed as one 3×3 max pool of the
    two stacked "alpha > threshold" maps and a min over the pair. The min is a reduction,
    which XLA on CPU materialises once; the and of two compares is elementwise, and XLA
    fused it into every read of the next state's perception (8 per cell); without that a
    Growing-NCA rollout runs 1.15–1.24× faster (benchmarks/life_mask.py, docs/benchmarks.md).
    """
    hot = (jnp.stack([before, after]) > threshold).astype(jnp.float32)
    return jnp.min(jax.vmap(max_pool3)(hot), axis=0)


def sensor(child: Array, cluster: int) -> Array:
    """Child → parent: average of each ``cluster×cluster`` block. ``(H, W, C) -> (H/k, W/k, C)``."""
    h, w, c = child.shape
    if h % cluster or w % cluster:
        raise ValueError(f"grid {h}x{w} is not divisible by the cluster size {cluster}")
    return child.reshape(h // cluster, cluster, w // cluster, cluster, c).mean(axis=(1, 3))


def upsample(parent: Array, cluster: int) -> Array:
    """Nearest upsampling: every parent cell covers its ``cluster×cluster`` children."""
    hp, wp, c = parent.shape
    up = jnp.broadcast_to(parent[:, None, :, None, :], (hp, cluster, wp, cluster, c))
    return up.reshape(hp * cluster, wp * cluster, c)


def multiplex(dst: Array, src: Array, mode: str = "adder", scale: Array | None = None) -> Array:
    """Mix a signal into its destination channels: ``adder`` dst+src, ``scaled`` dst+λ⊙src,
    ``replace`` src."""
    if mode == "adder":
        return dst + src
    if mode == "replace":
        return jnp.broadcast_to(src, dst.shape).astype(dst.dtype)
    if mode == "scaled":
        if scale is None:
            raise ValueError("the scaled multiplexer needs a scale λ")
        return dst + scale * src
    raise ValueError(f"unknown multiplexer {mode!r}; known: {MULTIPLEXERS}")


def actuator(
    child: Array,
    signal: Array,
    cluster: int,
    signal_start: int,
    mode: str = "adder",
    scale: Array | None = None,
) -> Array:
    """Parent → child: upsample ``signal (H/k, W/k, S)`` and mix it into channels
    ``signal_start : signal_start+S`` of ``child (H, W, C)``. Other channels (the visible
    ones) are never written."""
    n_sig = signal.shape[-1]
    if signal_start + n_sig > child.shape[-1]:
        raise ValueError("signal channels run past the child's channels")
    up = upsample(signal, cluster)
    mixed = multiplex(child[..., signal_start : signal_start + n_sig], up, mode, scale)
    return jnp.concatenate([child[..., :signal_start], mixed, child[..., signal_start + n_sig :]], axis=-1)


def circle_mask(shape: tuple[int, int], center: Array, radius: Array) -> Array:
    """Bool ``(H, W)`` disc on the torus (distances wrap), for damage."""
    h, w = shape
    yy = jnp.arange(h)[:, None]
    xx = jnp.arange(w)[None, :]
    dy = jnp.abs(yy - center[0])
    dx = jnp.abs(xx - center[1])
    dy = jnp.minimum(dy, h - dy)
    dx = jnp.minimum(dx, w - dx)
    return dy**2 + dx**2 <= radius**2


def random_hole(
    key: Array,
    shape: tuple[int, int],
    radius_range: tuple[Any, Any],
    centre_range: tuple[float, float] | None = None,
    radius_scale: float = 1.0,
) -> Array:
    """Bool ``(H, W)`` disc at a random place, the one damage routine of the package.

    The centre is a uniform integer cell of the grid (``centre_range=None``: the env's
    ``damage_times`` holes) or uniform in ``centre_range`` × the grid's sides (Growing NCA's
    training damage: the middle half, ``(0.25, 0.75)``); the radius is uniform in
    ``radius_range`` times ``radius_scale`` (cells; Growing NCA: 5–20 % of the width).
    """
    h, w = shape
    kc, kr = jax.random.split(key)
    if centre_range is None:
        centre = jax.random.randint(kc, (2,), 0, jnp.array([h, w]))
    else:
        centre = jnp.array([h, w]) * jax.random.uniform(kc, (2,), minval=centre_range[0], maxval=centre_range[1])
    radius = jax.random.uniform(kr, (), minval=radius_range[0], maxval=radius_range[1]) * radius_scale
    return circle_mask(shape, centre, radius)


def cut(cells: Array, hole: Array) -> Array:
    """``cells (..., H, W, C)`` with every channel zeroed under the bool ``(H, W)`` ``hole``."""
    return cells * (~hole)[..., None].astype(cells.dtype)
