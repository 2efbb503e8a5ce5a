"""H-NCA Metamorphosis: the children start in pattern A; the coordinators must turn it into B.

After Pande & Grattarola, "Hierarchical Neural Cellular Automata" (ALIFE 2023; reference code
RituPande/hnca). In the reference, a child NCA is pretrained to grow pattern A and frozen; the
coordinators (and the sensor/actuator) are then trained so that the children's RGB becomes
pattern B. The reference's pairs (RituPande/hnca ``scripts/image_gen.py``) are synthetic 128×128
images in which B is made of A's own motifs rearranged on a dark background (A's dots regrouped
into rosettes, a ring of A's triangles, a diamond of A's cells), not unrelated shapes. The
circles → rings pair of :func:`synthetic_pattern` here is *not* such a pair: B shares no motif
with A.

``HNCA-Metamorphosis-v0`` — both levels act (children learn too). Children 64×64×12 (RGB + 9
signal channels, the CPU-sized scale; pass ``grid=(128, 128)`` for the reference's),
coordinators over 4×4 clusters, H-NCA perception, fire rate 0.5, no alive mask. The children
start with pattern A (``start``) in RGB and zeros elsewhere; the coordinators start at once
(τ_c = 0) from the sensed children; 64 steps.

``HNCA-Metamorphosis-Fixed-v0`` — the reference setting: the children follow a fixed, given rule
and only the coordinators act. The default rule is :func:`signal_readout_rule` (each child's
colour relaxes toward the first three channels of the signal it receives, its signal channels
leak); pass ``child_rule=(rule_fn, rule_params)`` for another one, e.g. a pretrained child
network via ``agents.networks.as_fixed_rule``.

``HNCA-Metamorphosis-Motifs-v0`` — the reference's experiment: the children grow pattern A from
one fixed noise seed (the same stored ``U[0, 1)`` array in every world) for τ_c = 64 steps, then
the coordinators must turn it into B, made of A's own motifs rearranged (:func:`motif_pair`;
``pair=`` ``"dots-rosettes"`` (default), ``"triangles-ring"`` or ``"squares-diamond"``); 124
steps. Train it in two stages (``hnca train --stage child|parent``, ``agents.two_stage``): a
child that grows A (``env.child_target``), then the coordinators with that child frozen. The
card applies, except the start (the noise seed) and the truncation.

Card
----
Observation: children: their perception (``(H, W, 4·12)``); coordinators: their perception,
    the sensed cluster mean and nothing else (``(H/4, W/4, 4·12 + 12)``).
Action: child update ``(H, W, 12)``; coordinator update + 9-channel broadcast ``(H/4, W/4, 21)``.
Reward: ``local`` (minus each child's RGB squared error to B; a coordinator gets its cluster's
    mean), ``team`` or ``improvement``; the loss is the children's RGB MSE to B.
Termination: none; truncated at 64 steps (Motifs: 124, after τ_c = 64 child-only steps).
Success metrics: ``mse`` (final, RGB in [0, 1]) and ``mse_255`` (the same on the 0–255 scale,
    the reference's unit).
Reference: 58.8 / 103 / 341 (0–255 scale) on its three pairs at 128×128: the lowest
    single-batch *training* losses over 25,000 epochs, not an evaluation (the median of the
    last 1,000 epochs is 561 / 111 / 178; divided by the variance of B, about 0.07–0.26).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hnca_env.env import HNCAEnv
from hnca_env.registry import register
from hnca_env.tasks.base import HNCA_STRUCTURE, Task

Array = jax.Array

#: Kinds of :func:`synthetic_pattern`.
SYNTHETIC = ("circles", "rings", "flower")

_PALETTES = {
    "circles": ((0.95, 0.95, 0.9), (0.85, 0.25, 0.2)),
    "rings": ((0.1, 0.15, 0.35), (0.95, 0.8, 0.2)),
    "flower": ((0.9, 0.95, 0.85), (0.6, 0.2, 0.65)),
}


def synthetic_pattern(
    kind: str, grid: tuple[int, int], seed: int = 0, count: int | None = None
) -> np.ndarray:
    """A synthetic RGB pattern ``(H, W, 3)`` in [0, 1], covering the whole torus.

    Kinds: ``"circles"`` — ``count`` (default 5) discs of random centres and radii;
    ``"rings"`` — ``count`` (default 4) concentric rings around the centre; ``"flower"`` — a
    rose of ``count`` (default 6) petals with a disc at its heart. ``seed`` varies the random
    parts (centres, radii, phase). Anti-aliased by 4× supersampling; nothing is downloaded.
    """
    if kind not in SYNTHETIC:
        raise ValueError(f"unknown synthetic pattern {kind!r}; known: {SYNTHETIC}")
    h, w = int(grid[0]), int(grid[1])
    rng = np.random.default_rng(seed)
    s = 4
    y, x = np.meshgrid((np.arange(h * s) + 0.5) / s, (np.arange(w * s) + 0.5) / s, indexing="ij")
    size = min(h, w)
    if kind == "circles":
        n = count or 5
        m = np.zeros_like(x, bool)
        for _ in range(n):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.08, 0.18) * size
            dy = np.minimum(np.abs(y - cy), h - np.abs(y - cy))  # torus distance
            dx = np.minimum(np.abs(x - cx), w - np.abs(x - cx))
            m |= dy**2 + dx**2 < r**2
    else:
        dy, dx = y - h / 2, x - w / 2
        r = np.hypot(dy, dx) / (size / 2)
        if kind == "rings":
            n = count or 4
            m = np.sin(np.pi * 2 * n * r / 2 + rng.uniform(0, 0.5)) > 0
        else:
            n = count or 6
            th = np.arctan2(dy, dx) + rng.uniform(0, np.pi)
            m = (r < 0.45 + 0.35 * np.cos(n * th)) | (r < 0.2)
    bg, fg = (np.asarray(c, np.float32) for c in _PALETTES[kind])
    img = np.where(m[..., None], fg, bg)
    return img.reshape(h, s, w, s, 3).mean(axis=(1, 3)).astype(np.float32)


#: Motif pairs built as the reference's are: B is A's own motifs rearranged on a dark background.
MOTIF_PAIRS = {
    "dots-rosettes": ("dot", "rosettes"),
    "triangles-ring": ("triangle", "ring"),
    "squares-diamond": ("square", "diamond"),
}
_MOTIF_COLOURS = np.array([[0.95, 0.75, 0.2], [0.9, 0.3, 0.35], [0.35, 0.75, 0.95]], np.float32)
_DARK = np.array([0.05, 0.05, 0.1], np.float32)


def _arrangement(kind: str, n: int, side: float) -> np.ndarray:
    """``(n, 2)`` motif centres (y, x) relative to the grid centre for pattern B."""
    if kind == "ring":
        th = 2 * np.pi * np.arange(n) / n
        return 0.33 * side * np.stack([np.sin(th), np.cos(th)], -1)
    if kind == "diamond":  # evenly along the perimeter of |y| + |x| = a
        a, t = 0.36 * side, 4 * np.arange(n) / n
        edge, f = np.floor(t).astype(int), t - np.floor(t)
        corners = a * np.array([[-1, 0], [0, 1], [1, 0], [0, -1], [-1, 0]], np.float64)
        return corners[edge] + f[:, None] * (corners[edge + 1] - corners[edge])
    if kind == "rosettes":  # five rosettes on a pentagon, n // 5 motifs around each
        per = max(1, n // 5)
        out = []
        for i in range(n):
            r, j = divmod(i, per)
            r = min(r, 4)
            phi = 2 * np.pi * r / 5 - np.pi / 2
            psi = 2 * np.pi * j / per + phi
            out.append(
                0.3 * side * np.array([np.sin(phi), np.cos(phi)])
                + 0.1 * side * np.array([np.sin(psi), np.cos(psi)])
            )
        return np.array(out)
    raise ValueError(f"unknown arrangement {kind!r}")


def motif_pair(
    pair: str, grid: tuple[int, int], seed: int = 0, count: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Patterns ``(A, B)``, each RGB ``(H, W, 3)`` in [0, 1]: ``count`` small motifs (dots,
    triangles or squares, three colours) scattered over a dark background in A, and the *same*
    motifs, each keeping its colour, rearranged in B (into five rosettes, a ring or a diamond).
    After the reference's targets (RituPande/hnca ``scripts/image_gen.py``: A's dots regrouped
    into rosettes, a ring of A's triangles, a diamond of A's cells); procedural, nothing
    downloaded. ``seed`` varies A's scattering and which motif goes where in B.
    """
    if pair not in MOTIF_PAIRS:
        raise ValueError(f"unknown motif pair {pair!r}; known: {sorted(MOTIF_PAIRS)}")
    if isinstance(count, bool) or not isinstance(count, int) or not 5 <= count <= 25:
        raise ValueError(f"count must be an integer in [5, 25], got {count!r}")
    motif, arrangement = MOTIF_PAIRS[pair]
    h, w = int(grid[0]), int(grid[1])
    side = min(h, w)
    rng = np.random.default_rng(seed)
    # A: one motif in each of `count` random slots of a 5×5 lattice, jittered inside its slot
    slots = rng.choice(25, count, replace=False)
    cell = np.array([h, w]) / 5.0
    a_pos = (np.stack([slots // 5, slots % 5], -1) + 0.5 + rng.uniform(-0.2, 0.2, (count, 2))) * cell
    b_pos = _arrangement(arrangement, count, side)[rng.permutation(count)] + np.array([h, w]) / 2.0
    colours = _MOTIF_COLOURS[np.arange(count) % len(_MOTIF_COLOURS)]
    r = 0.05 * side
    s = 4
    y, x = np.meshgrid((np.arange(h * s) + 0.5) / s, (np.arange(w * s) + 0.5) / s, indexing="ij")

    def draw(pos):
        img = np.broadcast_to(_DARK, (h * s, w * s, 3)).copy()
        for (cy, cx), colour in zip(pos, colours):
            dy, dx = y - cy, x - cx
            if motif == "dot":
                m = dy**2 + dx**2 < r**2
            elif motif == "square":
                m = (np.abs(dy) < 0.85 * r) & (np.abs(dx) < 0.85 * r)
            else:  # an upward triangle of height 2r
                m = (dy < r) & (dy > -r) & (np.abs(dx) < (dy + r) / 2 * 1.15)
            img[m] = colour
        return img.reshape(h, s, w, s, 3).mean(axis=(1, 3)).astype(np.float32)

    return draw(a_pos), draw(b_pos)


def _pattern(spec: Any, grid: tuple[int, int], seed: int) -> np.ndarray:
    if isinstance(spec, str) and spec in SYNTHETIC:
        return synthetic_pattern(spec, grid, seed)
    return Task(spec, visible=3).target_array(spec, grid)


def signal_readout_rule(
    rule_params: dict, obs: Array, key: Array, *, channels: int, signal_start: int
) -> Array:
    """A fixed child rule driven by the coordinators' broadcast (one world).

    With ``s`` the child's state (the identity part of its perception), the update is
    ``Δrgb = rate · (s[signals][:3] - s[:3])`` and ``Δsignals = -leak · s[signals]``: each
    child's colour follows the first three signal channels, and the signal leaks, so a
    coordinator must keep broadcasting. ``rule_params``: ``rate`` and ``leak`` (numbers in
    ``EnvParams.rule_params``, vmappable); ``channels`` and ``signal_start`` are structure,
    bound with ``functools.partial``.
    """
    del key
    c, start = channels, signal_start
    s = obs[..., :c]  # perception is kernel-major and starts with the identity kernel
    sig = s[..., start:]
    d_rgb = rule_params["rate"] * (sig[..., :3] - s[..., :3])
    pad = jnp.zeros(s.shape[:-1] + (start - 3,), s.dtype)
    return jnp.concatenate([d_rgb, pad, -rule_params["leak"] * sig], axis=-1)


class MetamorphosisTask(Task):
    """Children's RGB against pattern B; reports the reference's 0–255 MSE too.

    A target may be a :data:`SYNTHETIC` kind (drawn with ``pattern_seed + 1``), a shape name,
    a PNG path or an array, also when given later as ``make(..., target=...)``."""

    def __init__(self, target: Any, pattern_seed: int = 0):
        super().__init__(target, visible=3)
        self.pattern_seed = pattern_seed

    def target_array(self, spec, grid):
        if isinstance(spec, str) and spec in SYNTHETIC:
            return synthetic_pattern(spec, grid, self.pattern_seed + 1)
        return super().target_array(spec, grid)

    def summarize(self, trace, params):
        mse = trace["mse"][-1]
        return {"mse": mse, "mse_255": mse * 255.0**2}


def metamorphosis(
    grid: tuple[int, int] = (64, 64),
    start: Any = "circles",
    target: Any = "rings",
    pattern_seed: int = 0,
    child_rule: Any = "learn",
    **kwargs: Any,
) -> HNCAEnv:
    """Metamorphosis env. ``start``/``target``: a :data:`SYNTHETIC` kind, a shape name, a PNG
    path or an ``(H, W, 3)`` array. ``child_rule``: ``"learn"`` (children act), ``"readout"``
    (:func:`signal_readout_rule`) or a ``(rule_fn, rule_params)`` pair."""
    kwargs = {**HNCA_STRUCTURE, **kwargs}
    kwargs.setdefault("name", "HNCA-Metamorphosis-v0")
    grid = tuple(grid)
    start_rgb = _pattern(start, grid, pattern_seed)
    if child_rule == "readout":
        if kwargs["perception"][0] != "identity":
            raise ValueError("the readout child rule needs 'identity' as the first perception kernel")
        if kwargs["signals"] < 3:
            raise ValueError("the readout child rule needs at least 3 signal channels")
        rule = partial(
            signal_readout_rule,
            channels=kwargs["channels"],
            signal_start=kwargs["channels"] - kwargs["signals"],
        )
        child_rule = (rule, {"rate": jnp.float32(0.5), "leak": jnp.float32(0.5)})
    if child_rule != "learn":
        kwargs["fixed_rules"] = {**(kwargs.get("fixed_rules") or {}), "cell": child_rule}
    seed_state = np.zeros((*grid, kwargs["channels"]), np.float32)
    seed_state[..., :3] = start_rgb
    overrides = {
        "seed": "state",
        "seed_state": seed_state,
        "tau_c": 0,
        "max_steps_in_episode": 64,
        **(kwargs.pop("default_overrides", None) or {}),
    }
    return HNCAEnv(
        grid=grid, task=MetamorphosisTask(target, pattern_seed), default_overrides=overrides, **kwargs
    )


def metamorphosis_motifs(
    grid: tuple[int, int] = (64, 64), pair: str = "dots-rosettes", pattern_seed: int = 0, **kwargs: Any
) -> HNCAEnv:
    """The reference's experiment: children grow A from a fixed noise seed for τ_c steps, then the
    coordinators must turn it into B, made of A's own motifs rearranged (:func:`motif_pair`).
    Train it in two stages (``agents.two_stage``, ``hnca train --stage child|parent``): a child
    that grows A (its stage-1 target, ``env.child_target``), then the coordinators with that
    child frozen."""
    kwargs.setdefault("name", "HNCA-Metamorphosis-Motifs-v0")
    a, b = motif_pair(pair, tuple(grid), pattern_seed)
    channels = {**HNCA_STRUCTURE, **kwargs}["channels"]
    # the reference grows A from one fixed U[0, 1) noise array (a stored seed reused by every
    # world): a noise drawn afresh per world would leave a torus NCA no way to place B's motifs
    fixed_noise = np.random.default_rng(10_000 + pattern_seed).random((*tuple(grid), channels), np.float32)
    overrides = {"seed": "state", "seed_state": fixed_noise, "tau_c": 64, "max_steps_in_episode": 64 + 60}
    overrides.update(kwargs.pop("default_overrides", None) or {})
    env = metamorphosis(
        grid, start=a, target=b, pattern_seed=pattern_seed, default_overrides=overrides, **kwargs
    )
    env.motif_a = a  # pattern A
    env.child_target = a  # the child's own target in stage 1 (agents.two_stage.child_problem)
    return env


#: The reference setting: children follow a fixed rule, only coordinators act.
metamorphosis_fixed = partial(metamorphosis, child_rule="readout", name="HNCA-Metamorphosis-Fixed-v0")

register("HNCA-Metamorphosis-v0", metamorphosis)
register("HNCA-Metamorphosis-Fixed-v0", metamorphosis_fixed)
register("HNCA-Metamorphosis-Motifs-v0", metamorphosis_motifs)
