"""Sharding the worlds axis over devices gives the same numbers as one device.

The check runs in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(the flag must be set before JAX starts), on CPU.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from hnca_env import sharding

SCRIPT = textwrap.dedent(
    """
    import dataclasses
    import jax, jax.numpy as jnp, numpy as np
    import hnca_env
    from hnca_env import sharding
    from hnca_env.evaluate import evaluate_worlds, random_policy
    from agents.pool import PoolConfig, make_pool_trainer

    assert jax.device_count() == 4, jax.devices()
    mesh = sharding.world_mesh()
    env, params = hnca_env.make("HNCA-Grow-v0", grid=(16, 16), tau_c=2, max_steps_in_episode=5)
    policy = random_policy(env, 0.1)

    # 1. vmapped reset + scanned steps (with auto-reset), sharded vs not
    def run(keys):
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
        def body(carry, k):
            obs, state = carry
            ks = jax.random.split(k, keys.shape[0])
            act = jax.vmap(policy)(ks, obs)
            obs, state, rew, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(ks, state, act, params)
            return (obs, state), rew["cell"].mean(axis=(1, 2))
        (obs, state), rews = jax.lax.scan(body, (obs, state), jax.random.split(keys[0], 6))
        return state, rews
    keys = jax.random.split(jax.random.key(0), 8)
    plain = jax.jit(run)(keys)
    sharded = jax.jit(run)(sharding.shard_worlds(keys, mesh))
    cells = sharded[0].grids["cell"]
    assert len(cells.sharding.device_set) == 4, cells.sharding
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(sharded)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)

    # 2. evaluation
    m0 = evaluate_worlds(env, policy, jax.random.key(1), params, n_worlds=8, steps=3)
    m1 = evaluate_worlds(env, policy, jax.random.key(1), params, n_worlds=8, steps=3, mesh=mesh)
    for k in m0:
        np.testing.assert_allclose(np.asarray(m0[k]), np.asarray(m1[k]), rtol=1e-5, atol=1e-6)

    # 3. pool trainer: the pool (worlds axis) sharded over the devices
    genv, gparams = hnca_env.make("Grow-v0", grid=(12, 12), target_size=8)
    cfg = PoolConfig(pool_size=16, batch_size=4, min_steps=2, max_steps=3, hidden={"cell": 16})
    init, iteration, _ = make_pool_trainer(genv, gparams, cfg)
    init_m, iteration_m, _ = make_pool_trainer(genv, gparams, dataclasses.replace(cfg, mesh=mesh))
    s0, s1 = init(jax.random.key(2)), init_m(jax.random.key(2))
    for _ in range(2):
        s0, m0 = iteration(s0)
        s1, m1 = iteration_m(s1)
    assert len(s1.pool.grids["cell"].sharding.device_set) == 4, s1.pool.grids["cell"].sharding
    np.testing.assert_allclose(float(m0["loss"]), float(m1["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s1.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # ... and with each of 2 devices differentiating its 2 worlds one at a time (world_chunk
    # counts per device with a mesh)
    mesh2 = sharding.world_mesh(jax.devices()[:2])
    init_c, iteration_c, _ = make_pool_trainer(genv, gparams, dataclasses.replace(cfg, mesh=mesh2, world_chunk=1))
    s2 = init_c(jax.random.key(2))
    for _ in range(2):
        s2, m2 = iteration_c(s2)
    assert len(s2.pool.grids["cell"].sharding.device_set) == 2, s2.pool.grids["cell"].sharding
    np.testing.assert_allclose(float(m0["loss"]), float(m2["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s0.pool), jax.tree.leaves(s2.pool)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

    # the hnca command: --devices 2 trains on a mesh of 2 and records it
    import json, tempfile
    from agents.launch import main as hnca
    run = tempfile.mkdtemp() + "/run"
    tiny = ["--task", "Grow-v0", "--grid", "12", "--target-size", "8", "--hidden", "8", "--pool-size", "8",
            "--batch-size", "4", "--min-steps", "2", "--max-steps", "2", "--set", "trainer.world_chunk=1"]
    assert hnca(["train", *tiny, "--iterations", "1", "--devices", "2", "--out", run]) == 0
    assert json.load(open(run + "/config.json"))["devices"] == 2
    # resuming on the mesh continues exactly: the carry read from a checkpoint (onto one
    # device) is laid out as the unbroken run's was
    from agents.loop import train_loop
    d1, d2 = tempfile.mkdtemp(), tempfile.mkdtemp()
    loop = lambda d, n, **kw: train_loop(init_c, iteration_c, jax.random.key(5), n, out=d, checkpoint_every=1,
                                         progress=False, **kw)[0]
    straight = loop(d1, 3)
    loop(d2, 2)
    resumed = loop(d2, 3, resume=True)
    from agents.checkpoint import to_tree
    assert int(resumed.iteration) == 3
    for a, b in zip(jax.tree.leaves(to_tree(straight)), jax.tree.leaves(to_tree(resumed))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # 4. PPO (MAPPO): the worlds of the rollouts sharded over the devices
    from agents.ppo import PPOConfig, make_ppo
    pcfg = PPOConfig.for_task(
        "Density-v0", algo="mappo", env_kwargs={"grid": (8, 8), "max_steps_in_episode": 8}, num_envs=4,
        num_steps=4, total_timesteps=32, update_epochs=1, num_minibatches=2, hidden=8, parent_hidden=8,
        critic_hidden=8, world_embed=8,
    )
    p0, p1 = make_ppo(pcfg), make_ppo(pcfg.replace(mesh=mesh))
    a, b = jax.jit(p0.init)(jax.random.key(3)), jax.jit(p1.init)(jax.random.key(3))
    (a, ma), (b, mb) = jax.jit(p0.update)(a), jax.jit(p1.update)(b)
    assert len(b.env_state.env_state.grids["cell"].sharding.device_set) == 4
    np.testing.assert_allclose(float(ma["loss"]), float(mb["loss"]), rtol=1e-4, atol=1e-6)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
    print("SHARDED-OK")
    """
)


def test_sharded_equals_unsharded_on_4_cpu_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "SHARDED-OK" in out.stdout, out.stdout[-3000:] + out.stderr[-5000:]


def test_shard_worlds_rejects_indivisible_axis():
    import jax
    import numpy as np

    mesh = sharding.world_mesh(jax.devices()[:1])
    assert sharding.shard_worlds(None, None) is None
    x = sharding.shard_worlds(np.zeros((3, 2)), mesh)
    assert x.shape == (3, 2)
    with pytest.raises(ValueError, match="leading"):
        sharding.shard_worlds(np.zeros(()), mesh)
    from agents.pool import PoolConfig

    class FakeMesh:
        shape = {"worlds": 3}

    with pytest.raises(ValueError, match="multiples of 3"):
        PoolConfig(pool_size=16, batch_size=4, mesh=FakeMesh())
    # with a mesh, world_chunk counts the worlds of each device's share of the batch
    assert PoolConfig(pool_size=16, batch_size=4, mesh=mesh, world_chunk=2).chunk_per_device() == 2
    with pytest.raises(ValueError, match="each device's share"):
        PoolConfig(pool_size=16, batch_size=4, mesh=mesh, world_chunk=3)
    assert PoolConfig(pool_size=16, batch_size=4, mesh=mesh).chunk_per_device(72 * 72) is None  # "auto"
    from hnca_env.rollout import resolve_world_chunk

    assert resolve_world_chunk("auto", 64, mesh, cells_per_world=72 * 72) is None


def test_replicate_and_no_mesh_passthrough():
    import jax
    import numpy as np

    mesh = sharding.world_mesh(jax.devices()[:1])
    x = np.arange(6.0).reshape(2, 3)
    r = sharding.replicate({"w": x}, mesh)
    np.testing.assert_array_equal(r["w"], x)
    assert r["w"].sharding.is_fully_replicated
    assert sharding.replicate(x, None) is x
    assert sharding.constrain_worlds(x, None) is x


def test_hnca_reads_devices_before_jax_starts(tmp_path):
    """The ``hnca`` command finds a run's ``devices`` on its command line (or the resumed
    run's record) before JAX starts; a process whose JAX has fewer devices gets an error
    naming the fix."""
    import json

    from agents.launch import requested_devices
    from agents.pool_run import PoolRunConfig

    assert requested_devices(["train", "--devices", "2"]) == 2
    assert requested_devices(["train", "--set", "devices=3", "--out", "x"]) == 3
    assert requested_devices(["train", "--out", "x"]) == 1
    assert requested_devices(["eval", "--run", "x"]) == 1
    (tmp_path / "config.json").write_text(json.dumps({"devices": 2}))
    assert requested_devices(["train", "--resume", str(tmp_path)]) == 2
    (tmp_path / "c.yaml").write_text("devices: 4\n")
    assert requested_devices(["train", "--config", str(tmp_path / "c.yaml")]) == 4
    assert PoolRunConfig(devices=1).mesh() is None
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count=64"):
        PoolRunConfig(devices=64).mesh()
    with pytest.raises(ValueError, match="devices must be an integer >= 1"):
        PoolRunConfig(devices=0)
