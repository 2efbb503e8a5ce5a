"""Bad input never poisons a world or a run silently (issue 15): non-finite actions, states of
another env, settings that cannot work, unreadable config/run/checkpoint files, and the number
of checkpoints kept when Ctrl-C lands in a checkpoint write."""

import shutil
import signal
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_same_state
from flax import struct
from jax.experimental import checkify

import hnca_env
from agents.checkpoint import CHECKPOINT_SUBDIR, Checkpointer
from agents.cli import main
from agents.loop import train_loop


def zero_action(env, params):
    return {lvl: jnp.zeros(s.shape, jnp.float32) for lvl, s in env.action_space(params).spaces.items()}


# ----------------------------------------------------------------------- 1. non-finite actions
def test_eager_step_rejects_nonfinite_actions_naming_level_and_count(grow_env, hnca_small, key):
    env, params = grow_env
    _, state = env.reset(key, params)
    action = zero_action(env, params)
    action["cell"] = action["cell"].at[1, 2, 3].set(jnp.nan).at[4, 5, 6].set(jnp.inf)
    with pytest.raises(ValueError, match=r"action\['cell'\] has 2 non-finite values \(NaN or inf\)"):
        env.step(key, state, action, params)

    env, params = hnca_small
    _, state = env.reset(key, params)
    action = zero_action(env, params)
    action["parent"] = action["parent"].at[0, 0, 0].set(-jnp.inf)
    with pytest.raises(ValueError, match=r"action\['parent'\] has 1 non-finite value "):
        env.step(key, state, action, params)
    env.step(key, state, zero_action(env, params), params)  # finite actions pass


def test_a_concrete_action_closed_over_by_jit_is_checked_while_tracing(grow_env, key):
    """An action made outside a jitted function is a constant of it: checked once, at trace time."""
    env, params = grow_env
    _, state = env.reset(key, params)
    action = zero_action(env, params)
    _, after, *_ = jax.jit(lambda s: env.step(key, s, action, params))(state)
    _, eager, *_ = env.step(key, state, action, params)
    assert_same_state(after, eager)
    bad = {"cell": action["cell"].at[0, 0, 0].set(jnp.nan)}
    with pytest.raises(ValueError, match=r"action\['cell'\] has 1 non-finite value "):
        jax.jit(lambda s: env.step(key, s, bad, params))(state)


def test_checkify_finds_the_first_step_with_a_nonfinite_action(grow_env, key):
    env, params = grow_env
    _, state = env.reset(key, params)

    def rollout(key, state, bad_step):
        """Five steps of zero actions; the action of step ``bad_step`` has one NaN cell."""

        def body(state, k):
            action = zero_action(env, params)
            nan = jnp.where(state.time == bad_step, jnp.nan, 0.0)
            action["cell"] = action["cell"].at[3, 3, 0].set(nan)
            _, state, *_ = env.step(k, state, action, params)
            return state, None

        return jax.lax.scan(body, state, jax.random.split(key, 5))[0]

    checked = jax.jit(checkify.checkify(rollout, errors=checkify.user_checks))
    err, _ = checked(key, state, -1)
    assert err.get() is None
    err, _ = checked(key, state, 2)
    assert "action['cell'] has 1 non-finite value(s) (NaN or inf) at step 2" in err.get()
    with pytest.raises(checkify.JaxRuntimeError, match="at step 2"):
        err.throw()
    # without checkify the jitted step checks nothing (and costs nothing): the NaN goes through
    final = jax.jit(rollout)(key, state, 2)
    assert not np.all(np.isfinite(np.asarray(final.grids["cell"])))


# ----------------------------------------------------------------------- 5. the state's shapes
def test_step_checks_the_state_shapes(grow_env, key):
    env, params = grow_env
    other, other_params = hnca_env.make("Grow-v0", grid=(24, 24), target_size=10)
    _, big = other.reset(key, other_params)
    action = zero_action(env, params)
    msg = r"state.grids\['cell'\] has shape \(24, 24, 16\), expected \(16, 16, 16\)"
    with pytest.raises(ValueError, match=msg):
        env.step(key, big, action, params)
    with pytest.raises(ValueError, match=msg):  # the same message while tracing under jit
        jax.jit(env.step)(key, big, action, params)
    with pytest.raises(TypeError, match="state must be an EnvState"):
        env.step(key, {"cell": big.grids["cell"]}, action, params)


# ----------------------------------------------------------------------- 6a. tau_c vs episode
def test_tau_c_at_or_beyond_the_episode_length_warns():
    with pytest.warns(UserWarning, match=r"tau_c=12 >= max_steps_in_episode=12.*never act"):
        hnca_env.make("HNCA-Grow-v0", grid=(16, 16), tau_c=12, max_steps_in_episode=12)
    env, _ = hnca_env.make("HNCA-Grow-v0", grid=(16, 16), tau_c=2, max_steps_in_episode=12)
    with pytest.warns(UserWarning, match=r"tau_c=40 >= max_steps_in_episode=30"):
        env.make_params(tau_c=40, max_steps_in_episode=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hnca_env.make("HNCA-Grow-v0", grid=(16, 16), tau_c=11, max_steps_in_episode=12)
        hnca_env.make("Grow-v0", grid=(16, 16), tau_c=50, max_steps_in_episode=12)  # no coordinators


# ----------------------------------------------------------------------- 6b. --keep after Ctrl-C
@struct.dataclass
class Carry:
    params: jax.Array
    iteration: jax.Array


def test_ctrl_c_during_a_checkpoint_write_keeps_max_to_keep(tmp_path, monkeypatch):
    # Ctrl-C (SIGINT) arrives while Orbax deletes the oldest step after writing the newest one:
    # before the fix the write stopped there and left max_to_keep + 1 steps on disk.
    from orbax.checkpoint._src.path import deleter

    real = deleter.StandardCheckpointDeleter.delete_steps
    sent = []

    def delete_steps(self, steps):
        if steps and not sent:
            sent.append(steps)
            signal.raise_signal(signal.SIGINT)
        return real(self, steps)

    monkeypatch.setattr(deleter.StandardCheckpointDeleter, "delete_steps", delete_steps)
    # Python's own Ctrl-C handler, as `hnca train` runs with: in one full fresh-venv run an
    # earlier test left another SIGINT handler installed and no KeyboardInterrupt came
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_during_deletion(tmp_path, sent)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_during_deletion(tmp_path, sent):
    init = lambda key: Carry(jnp.zeros(3), jnp.zeros((), jnp.int32))  # noqa: E731
    step = jax.jit(lambda s: (s.replace(params=s.params + 1, iteration=s.iteration + 1), {}))
    with pytest.raises(KeyboardInterrupt):
        train_loop(init, step, jax.random.key(0), 10, out=tmp_path, checkpoint_every=1, max_to_keep=3,
                   progress=False)  # fmt: skip
    assert sent == [[1]]  # the interrupt came during the write of step 4
    with Checkpointer(tmp_path / CHECKPOINT_SUBDIR) as ck:
        assert ck.steps() == [2, 3, 4]
    state, _ = train_loop(init, step, jax.random.key(0), 6, out=tmp_path, checkpoint_every=1,
                          max_to_keep=3, resume=True, progress=False)  # fmt: skip
    assert int(state.iteration) == 6 and float(state.params[0]) == 6.0


# ----------------------------------------------------------------------- 2-4. files of a run
@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy to damage of `tiny_run` (conftest.py: a finished 4-iteration `hnca train` run,
    checkpoints 2 and 4)."""
    return shutil.copytree(tiny_run, tmp_path / "run")


def truncate_data(step_dir):
    """Cut every array data file of a checkpoint step to 10 bytes (a torn copy, a full disk)."""
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[:10])


def one_error_line(capfd) -> str:
    """The whole of stderr, which must be one ``hnca: error:`` line."""
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hnca: error: "), err
    return err[0]


def test_train_config_missing_or_not_yaml_is_one_error_line(tmp_path, capfd):
    capfd.readouterr()
    missing = tmp_path / "nope.yaml"
    assert main(["train", "--agent", "ippo", "--config", str(missing)]) == 2
    line = one_error_line(capfd)
    assert str(missing) in line and "no such file" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.001\nnum_envs: 4\n")
    assert main(["train", "--agent", "ippo", "--config", str(bad)]) == 2
    line = one_error_line(capfd)
    assert str(bad) in line and "not valid YAML" in line and "line" in line


def test_damaged_config_json_names_the_file(run_copy, capfd):
    capfd.readouterr()
    path = run_copy / "config.json"
    path.write_text(path.read_text()[:60])
    for argv in (["eval", "--run", str(run_copy)], ["train", "--resume", str(run_copy)]):
        assert main(argv) == 2
        line = one_error_line(capfd)
        assert f"{path} is damaged or not JSON" in line


def test_damaged_params_msgpack_names_the_file(run_copy, capfd):
    capfd.readouterr()
    path = run_copy / "params.msgpack"
    path.write_bytes(path.read_bytes()[:100])
    assert main(["eval", "--run", str(run_copy)]) == 2
    assert f"{path} is damaged or unreadable" in one_error_line(capfd)


def test_unreadable_checkpoints_give_one_clear_line(run_copy, capfd, caplog):
    capfd.readouterr()
    (run_copy / "params.msgpack").unlink()  # eval falls back to the checkpoints
    ck_dir = run_copy / CHECKPOINT_SUBDIR
    truncate_data(ck_dir / "4")
    assert main(["eval", "--run", str(run_copy)]) == 0  # the older step 2 is used
    assert "checkpoint 2" in capfd.readouterr().out
    assert len(caplog.records) == 1 and len(caplog.records[0].getMessage()) < 300
    assert "step 4" in caplog.records[0].getMessage() and "damaged" in caplog.records[0].getMessage()
    caplog.clear()

    truncate_data(ck_dir / "2")
    assert main(["eval", "--run", str(run_copy)]) == 2
    line = one_error_line(capfd)  # no Orbax tracebacks, no TensorStore specs
    assert len(line) < 600 and "no complete checkpoint" in line
    assert "step 4 is damaged" in line and "step 2 is damaged" in line
    assert not caplog.records


def test_trainer_configs_take_numpy_scalars_as_python_numbers():
    """A sweep over np.arange builds configs that pass their checks and write plain JSON."""
    import json

    from agents.es import ESConfig
    from agents.pool import PoolConfig
    from agents.pool_run import PoolRunConfig
    from agents.ppo import PPOConfig

    ppo = PPOConfig(num_envs=np.int64(4), lr=np.float32(3e-4))
    assert type(ppo.num_envs) is int and type(ppo.lr) is float
    json.dumps(ppo.to_dict())
    assert type(PoolConfig(pool_size=np.int64(64), batch_size=np.int32(8)).pool_size) is int
    assert type(ESConfig(population=np.int64(8)).population) is int
    run = PoolRunConfig(pool_size=np.int64(64), lr=np.float64(1e-3))
    assert type(run.pool_size) is int
    json.dumps(run.to_dict())
    with pytest.raises(ValueError, match="PPOConfig.num_envs must be a positive integer"):
        PPOConfig(num_envs=np.int64(0))


def test_more_bad_settings_name_themselves(grow_env, key):
    from agents.pool import PoolConfig

    for bad, match in [
        (dict(grad="clip", clip_norm=-1.0), "clip_norm must be a finite positive number"),
        (dict(lr=float("inf")), "lr must be a finite positive number"),
        (dict(action_noise=float("inf")), "action_noise must be a finite number"),
        (dict(damage=0.5), "damage must be an integer"),
    ]:
        with pytest.raises(ValueError, match=match):
            PoolConfig(pool_size=16, batch_size=4, **bad)
    # a weighted reward's weights must all be there; a NaN start state is refused
    env, params = hnca_env.make("Grow-v0", grid=(8, 8), reward={"local": 1.0, "team": 1.0})
    with pytest.raises(ValueError, match=r"reward_weights lacks the weight\(s\) of \['team'\]"):
        env.reset(key, params.replace(reward_weights={"local": 1.0}))
    env, params = grow_env
    with pytest.raises(ValueError, match="params.seed_state contains NaN or inf"):
        env.reset(key, params.replace(seed_state=params.seed_state.at[0, 0, 0].set(jnp.nan)))


def test_dict_agent_view_with_underscores_in_level_names_and_a_bad_agent_action(key):
    from hnca_env.levels import Level
    from hnca_env.wrappers import DictAgentView

    env = hnca_env.HNCAEnv(
        grid=(4, 4), alive=False, levels=(Level("cell", 8), Level("big_boss", 8, cluster=2, signals=4))
    )
    view = DictAgentView(env)
    assert view.action_spaces()["big_boss_1_1"].shape == (env.action_dim("big_boss"),)
    assert view.observation_spaces()["cell_3_3"].shape == (env.obs_dim("cell"),)
    _, state = view.reset(key)
    actions = {a: jnp.zeros(s.shape) for a, s in view.action_spaces().items()}
    view.step(key, state, actions)
    actions["cell_2_1"] = jnp.zeros(3)
    with pytest.raises(ValueError, match=r"action of agent 'cell_2_1' has shape \(3,\)"):
        view.step(key, state, actions)


def test_constructor_arguments_of_the_wrong_kind_name_themselves():
    from agents.ppo import PPOConfig
    from hnca_env.levels import Level

    with pytest.raises(TypeError, match="task must be a hnca_env.Task"):
        hnca_env.HNCAEnv(grid=(8, 8), task="heart")
    with pytest.raises(TypeError, match="levels must be a non-empty sequence"):
        hnca_env.HNCAEnv(grid=(8, 8), levels=Level("cell", 8))
    with pytest.raises(ValueError, match="PPOConfig.anneal_lr must be true or false, got 'no'"):
        PPOConfig(anneal_lr="no")


def test_params_fields_of_the_wrong_shape_or_kind_name_themselves(hnca_small, key):
    env, params = hnca_small
    for bad, match in [
        (dict(actuator_scale=np.ones(3)), r"params.actuator_scale has shape \(3,\), expected \(9,\)"),
        (dict(damage_radius=5.0), r"params.damage_radius has shape \(\), expected \(2,\)"),
        (dict(seed=1.5), "params.seed must be an integer, got 1.5"),
        (dict(tau_c=2.5), "params.tau_c must be an integer"),
        (dict(max_steps_in_episode="10"), "params.max_steps_in_episode must be an integer"),
        (dict(fire_rate={"cell": [0.5, 0.5], "parent": 0.5}), r"params.fire_rate\['cell'\] must be a number"),
    ]:
        with pytest.raises(ValueError, match=match):
            env.reset(key, params.replace(**bad))


def test_policy_widths_of_the_wrong_kind_name_themselves(hnca_small):
    from agents.networks import make_policy

    env, _ = hnca_small
    with pytest.raises(ValueError, match=r"hidden\['cell'\] must be a positive integer, got -5"):
        make_policy(env, {"cell": -5})
    with pytest.raises(ValueError, match="hidden must be a mapping level -> width"):
        make_policy(env, 64)
    with pytest.raises(ValueError, match="learn_perception must be a sequence of level names"):
        make_policy(env, learn_perception="parent")


def test_nonfinite_scales_crossed_clamps_and_bad_es_settings_name_themselves(hnca_small, key):
    from agents.es import ESConfig

    env, params = hnca_small
    for bad, match in [
        (dict(actuator_scale=params.actuator_scale.at[0].set(jnp.nan)), "params.actuator_scale contains NaN"),
        (dict(sensor_scale=params.sensor_scale.at[0].set(jnp.inf)), "params.sensor_scale contains NaN or inf"),
        (dict(clamp_min=1.0, clamp_max=-1.0), "params.clamp_min=1.0 must be below clamp_max=-1.0"),
    ]:
        with pytest.raises(ValueError, match=match):
            env.reset(key, params.replace(**bad))
    with pytest.raises(ValueError, match="ESConfig.task: unknown env id 5"):
        ESConfig(task=5)
    with pytest.raises(ValueError, match="ESConfig.env_kwargs must be a mapping, got int"):
        ESConfig(env_kwargs=5)
    assert ESConfig.from_dict({"env_kwargs": None}).env_kwargs == {}
