"""Procedural target patterns (nothing is downloaded) and RGBA PNG loading.

A target is float32 ``(H, W, 4)`` premultiplied RGBA in [0, 1] on a transparent background,
the Growing-NCA convention. :func:`make_target` draws a shape of ``size×size`` pixels and pads
it to the grid (Growing NCA: 40×40 in 72×72); :func:`to_rgb` drops alpha for RGB tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_SUPERSAMPLE = 4


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled coordinates in [-1, 1]: ``(size*S, size*S)`` each."""
    n = size * _SUPERSAMPLE
    t = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    y, x = np.meshgrid(t, t, indexing="ij")
    return y, x


def _downsample(a: np.ndarray, size: int) -> np.ndarray:
    return a.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, *a.shape[2:]).mean(axis=(1, 3))


def _disc(y, x):
    r = np.hypot(x, y)
    return r < 0.85, np.stack([0.95 - 0.4 * r, 0.35 + 0.3 * r, 0.2 + 0.0 * r], -1)


def _ring(y, x):
    r = np.hypot(x, y)
    return (r < 0.85) & (r > 0.5), np.stack([0.2 + 0 * r, 0.5 + 0.4 * (r - 0.5), 0.9 + 0 * r], -1)


def _flower(y, x):
    r, th = np.hypot(x, y), np.arctan2(y, x)
    petals = r < 0.55 + 0.3 * np.cos(5 * th)
    centre = r < 0.25
    rgb = np.where(centre[..., None], [0.95, 0.8, 0.1], [0.85, 0.25, 0.55])
    return petals | centre, rgb


def _star(y, x):
    r, th = np.hypot(x, y), np.arctan2(y, x)
    spikes = 0.45 + 0.4 * np.abs(np.cos(2.5 * th)) ** 3
    return r < spikes, np.stack([0.95 + 0 * r, 0.75 - 0.4 * r, 0.1 + 0 * r], -1)


def _square(y, x):
    m = (np.abs(x) < 0.7) & (np.abs(y) < 0.7)
    return m, np.stack([0.3 + 0.3 * (x + 1) / 2, 0.7 + 0 * x, 0.3 + 0.3 * (y + 1) / 2], -1)


def _cross(y, x):
    m = ((np.abs(x) < 0.25) | (np.abs(y) < 0.25)) & (np.abs(x) < 0.85) & (np.abs(y) < 0.85)
    return m, np.stack([0.9 + 0 * x, 0.2 + 0 * x, 0.2 + 0 * x], -1)


def _heart(y, x):
    # classic implicit heart (x²+y²-1)³ - x²y³ < 0, scaled and flipped so the tip is down
    xs, ys = x * 1.3, -y * 1.3 + 0.25
    m = (xs**2 + ys**2 - 1) ** 3 - xs**2 * ys**3 < 0
    return m, np.stack([0.85 + 0 * x, 0.1 + 0.2 * (y + 1) / 2, 0.25 + 0 * x], -1)


def _smiley(y, x):
    r = np.hypot(x, y)
    face = r < 0.85
    eyes = (np.hypot(x - 0.3, y + 0.25) < 0.12) | (np.hypot(x + 0.3, y + 0.25) < 0.12)
    mouth = (np.abs(np.hypot(x, y + 0.05) - 0.45) < 0.07) & (y > 0.15)
    dark = eyes | mouth
    rgb = np.where(dark[..., None], [0.15, 0.1, 0.05], [0.98, 0.85, 0.2])
    return face, rgb


#: Shape name -> generator of (mask, rgb) on [-1, 1]² coordinates; roughly easiest first.
SHAPES: dict[str, Callable] = {
    "disc": _disc,
    "square": _square,
    "ring": _ring,
    "cross": _cross,
    "heart": _heart,
    "star": _star,
    "flower": _flower,
    "smiley": _smiley,
}


def draw_shape(name: str, size: int) -> np.ndarray:
    """Draw shape ``name`` as premultiplied RGBA ``(size, size, 4)`` float32, anti-aliased."""
    if name not in SHAPES:
        raise ValueError(f"unknown target shape {name!r}; known: {sorted(SHAPES)}")
    if size < 4:
        raise ValueError(f"target size must be at least 4 pixels, got {size}")
    y, x = _coords(size)
    mask, rgb = SHAPES[name](y, x)
    alpha = mask.astype(np.float64)
    rgba = np.concatenate([np.clip(rgb, 0, 1) * alpha[..., None], alpha[..., None]], -1)
    return _downsample(rgba, size).astype(np.float32)


def pad_to(img: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Centre ``img (h, w, C)`` in a zero grid ``(H, W, C)``."""
    h, w = img.shape[:2]
    gh, gw = grid
    if h > gh or w > gw:
        raise ValueError(f"target {h}x{w} does not fit in the grid {gh}x{gw}")
    out = np.zeros((gh, gw, img.shape[2]), np.float32)
    y0, x0 = (gh - h) // 2, (gw - w) // 2
    out[y0 : y0 + h, x0 : x0 + w] = img
    return out


def make_target(name: str, grid: tuple[int, int], size: int | None = None) -> np.ndarray:
    """Shape ``name`` drawn at ``size`` (default: 5/9 of the grid, i.e. 40 in 72) and padded."""
    if size is None:
        size = max(4, round(min(grid) * 40 / 72))
    return pad_to(draw_shape(name, size), grid)


def load_png(path: str, grid: tuple[int, int], size: int | None = None) -> np.ndarray:
    """Load an RGBA (or RGB) PNG as premultiplied RGBA, resized to fit ``size`` and padded."""
    import imageio.v3 as iio

    img = np.asarray(iio.imread(path)).astype(np.float32) / 255.0
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB or RGBA image, got shape {img.shape}")
    if img.shape[2] == 3:
        img = np.concatenate([img, np.ones_like(img[..., :1])], -1)
    img[..., :3] *= img[..., 3:]
    size = size or max(4, round(min(grid) * 40 / 72))
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # area-weighted nearest resize, dependency-free
    ys = np.minimum((np.arange(nh) + 0.5) / scale, h - 1).astype(int)
    xs = np.minimum((np.arange(nw) + 0.5) / scale, w - 1).astype(int)
    return pad_to(img[ys][:, xs], grid)


def to_rgb(rgba: np.ndarray) -> np.ndarray:
    """Premultiplied RGBA -> RGB on a black background (the RGB tasks' convention)."""
    return np.ascontiguousarray(rgba[..., :3])
