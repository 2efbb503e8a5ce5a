"""Write docs/tasks.md from the task modules' cards, with docs/tasks/*.png (a start state beside
its target for every registered id) and the random / do-nothing table of
``benchmarks/results/tasks.json`` (``python benchmarks/tasks.py``).

Usage: ``python docs/make_tasks_page.py`` (a few seconds per task on a CPU). The page is
generated so that it says what the code says; edit the modules' docstrings, not the page.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import hnca_env
from hnca_env.render import render, write_png

OUT = Path(__file__).resolve().parent / "tasks"
SIZE = 160  # pixels per panel, about


def _frame(env, state, params, **kw) -> np.ndarray:
    scale = max(1, SIZE // env.grid[0])
    return np.asarray(render(env, state, params, scale=scale, target=True, **kw))


def _gap(h: int) -> np.ndarray:
    return np.full((h, 6, 3), 255, np.uint8)


INTRO = """# Tasks

Every task is one file in `hnca_env/tasks/`, registered under versioned ids when `hnca_env` is
imported. `hnca tasks` lists them; `hnca info ID` prints an env's structure. Each module opens
with a card (below, generated from the code by `docs/make_tasks_page.py`).

```python
import jax
import hnca_env
from hnca_env.evaluate import evaluate, zero_policy

env, params = hnca_env.make("Density-v0", rho=(0.5, 0.5))       # options: constructor or EnvParams
policy = zero_policy(env)                                        # do-nothing; any policy(key, obs) -> action
metrics = evaluate(env, policy, jax.random.key(0), params, n_worlds=64)
```

`evaluate` rolls `n_worlds` episodes of `policy(key, obs) -> action` (one world), batched over
worlds by `hnca_env.rollout.map_worlds` (one `vmap`, or on a CPU chunks of about 8k cells one
after another; docs/concepts.md),
records the task's per-step `trace` and returns its named success metrics (`summarize`),
averaged over worlds. Every task offers the library rewards — `local` (minus each cell's
error; a coordinator gets its cluster's mean), `team` and `improvement` — built from the task's
`error_map`, and any reward function plugs in with `reward=` (docs/rewards.md).

A task's numbers (targets, switch times, densities, speeds, the digit split) live in
`EnvParams.task_params`, so they can be changed or vmapped without re-compiling; its structure
(the number of goals, the grid) is fixed by `make`. Everything is generated or shipped
(`hnca_env/data/digits.npz`); nothing is downloaded.
"""


def _markdown(doc: str) -> str:
    """The module docstring as markdown: ``code`` to `code`, the card as a list."""
    doc = re.sub(r"``([^`]+)``", r"`\1`", doc)
    doc = re.sub(r":(func|class|data|meth|mod):`~?([^`]+)`", r"`\2`", doc)
    head, _, card = doc.partition("Card\n----\n")
    lines, out = card.strip().splitlines(), []
    for line in lines:
        m = re.match(r"^([A-Z][^:]{0,60}?): (.*)$", line)
        out.append(f"- **{m.group(1)}**: {m.group(2)}" if m else f"  {line.strip()}")
    title, _, body = head.strip().partition("\n")
    return f"## {title}\n\n{body.strip()}\n\n**Card**\n\n" + "\n".join(out) + "\n"


def _baselines() -> str:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "tasks.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    rows = ["| task | metric | random | do-nothing | trivial answers |", "|---|---|---:|---:|---|"]
    by = {(r["task"], r["policy"]): r for r in data["results"]}
    for task in dict.fromkeys(r["task"] for r in data["results"]):
        rnd, zero = by.get((task, "random")), by.get((task, "zero"))
        answers = [r for r in data["results"] if r["task"] == task and r.get("kind") == "answer"]
        for m in (rnd or zero)["headline"]:
            cells = [f"{p['metrics'][m]:.4g} ± {p['interval95'][m]:.2g}" if p else "" for p in (rnd, zero)]
            # a static image has no "after damage" (NaN): only metrics it can be scored on
            shown = "; ".join(
                f"{a['policy']}: {a['metrics'][m]:.4g}"
                for a in answers
                if m in a["metrics"] and a["metrics"][m] is not None and np.isfinite(a["metrics"][m])
            )
            rows.append(f"| {task} | {m} | {cells[0]} | {cells[1]} | {shown} |")
    worlds = data["config"]["worlds"]
    return (
        "\n## Baselines\n\n`python benchmarks/tasks.py` ("
        + str(worlds)
        + " worlds per task, 512 for Digits, full episodes at the registered sizes; mean ± 95% "
        "interval of the mean). Trivial answers are images the children could show (a same-area "
        "disc or the target's silhouette in its mean colour, B's mean colour, A itself, a constant "
        "or random label, an all-0 or all-1 field), scored by the same metric code on the same "
        "worlds (`hnca_env.baselines`). Trained policies join this table in docs/training.md, "
        "docs/baselines.md and docs/reproductions.md.\n\n" + "\n".join(rows) + "\n"
    )


def write_page() -> None:
    parts = [INTRO, "\n| id | grid | levels | episode |\n|---|---|---|---:|"]
    for env_id in hnca_env.registered_envs():
        env, params = hnca_env.make(env_id)
        parts.append(
            f"| `{env_id}` | {env.grid[0]}×{env.grid[1]} | {', '.join(env.agent_levels)} "
            f"(acting) | {int(params.max_steps_in_episode)} |"
        )
    parts.append("")
    for module in hnca_env.tasks.TASK_MODULES:
        mod = importlib.import_module(module)
        parts.append(_markdown(mod.__doc__))
        for env_id in hnca_env.registered_envs():
            env, _ = hnca_env.make(env_id)
            if type(env.task).__module__ == module:
                parts.append(
                    f"![{env_id}: start (left) and target](tasks/{env_id}.png)  \n*{env_id}: start, target*\n"
                )
    parts.append(_baselines())
    (OUT.parent / "tasks.md").write_text("\n".join(parts))
    print(OUT.parent / "tasks.md")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    key = jax.random.key(0)
    for env_id in hnca_env.registered_envs():
        env, params = hnca_env.make(env_id)
        _, state = env.reset(key, params)
        img = _frame(env, state, params)
        if env_id == "HNCA-GoalSwitch-v0":  # every goal
            goals = []
            for g in range(env.task.n_goals):
                s = state.replace(task={"goal": jnp.int32(g)})
                goals.append(_frame(env, s, params)[:, img.shape[1] // 2 :])
            img = np.concatenate(
                [img[:, : img.shape[1] // 2]] + [x for g in goals for x in (_gap(img.shape[0]), g)], 1
            )
        if env_id == "HNCA-Locomotion-v0":  # the target half-way through the episode
            later = state.replace(time=jnp.int32(int(params.max_steps_in_episode) // 2))
            img = np.concatenate(
                [img, _gap(img.shape[0]), _frame(env, later, params)[:, img.shape[1] // 2 :]], 1
            )
        write_png(img, str(OUT / f"{env_id}.png"))
        print(OUT / f"{env_id}.png", img.shape)
    write_page()


if __name__ == "__main__":
    main()
