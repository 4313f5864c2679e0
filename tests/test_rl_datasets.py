"""Offline RL data sets made locally and policies run in the simulator (the ``rl`` extra:
gymnasium[mujoco], stable-baselines3; those tests skip, saying so, where it is missing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aaren_ts.rl import DecisionAaren
from aaren_ts.rl.datasets import load_dataset, normalized_return


def _needs_rl():
    pytest.importorskip("gymnasium", reason="the 'rl' extra (gymnasium[mujoco]) is not installed")
    pytest.importorskip("mujoco", reason="the 'rl' extra (gymnasium[mujoco]) is not installed")
    pytest.importorskip("stable_baselines3", reason="the 'rl' extra is not installed")


def test_unknown_and_missing_sets_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"known:.*hopper-medium-replay"):
        load_dataset("hopper-expert", root=tmp_path)
    with pytest.raises(TypeError, match="str"):
        load_dataset(3, root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"python -m aaren_ts\.rl\.datasets hopper"):
        load_dataset("hopper-medium", root=tmp_path)


def test_normalized_return_matches_d4rl_references():
    assert normalized_return("hopper", -20.272305) == pytest.approx(0.0)
    assert normalized_return("halfcheetah", 12135.0) == pytest.approx(100.0)


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    """A 2,500-step SAC run on Hopper (random actions until 10,000: a fast, real pipeline)."""
    _needs_rl()
    from aaren_ts.rl.datasets import generate

    root = tmp_path_factory.mktemp("rl")
    generate("hopper", seed=0, root=root, max_sac_steps=2500, eval_every=2500,
             medium_transitions=600, verbose=False)  # fmt: skip
    return root


def test_generated_sets_are_d4rl_shaped_checksummed_and_seeded(tiny_sets, tmp_path):
    from aaren_ts.rl.datasets import generate

    replay = load_dataset("hopper-medium-replay", root=tiny_sets)
    medium = load_dataset("hopper-medium", root=tiny_sets)
    assert replay["observations"].shape == (2500, 11) and replay["actions"].shape == (2500, 3)
    assert len(medium["rewards"]) >= 600 and medium["observations"].shape[1] == 11
    for data in (replay, medium):
        ends = data["terminals"] | data["timeouts"]
        assert ends[-1] and ends.sum() == data["info"]["episodes"]
        assert np.abs(data["actions"]).max() <= 1.0
    info = medium["info"]
    assert info["sac_steps"] == 2500 and np.isfinite(info["random_return"])
    assert info["behaviour_return"] == pytest.approx(info["dataset_return_mean"])
    # the same seed gives the same bytes
    generate("hopper", seed=0, root=tmp_path, max_sac_steps=2500, eval_every=2500,
             medium_transitions=600, verbose=False)  # fmt: skip
    for name in ("hopper-medium", "hopper-medium-replay"):
        first = json.loads((tiny_sets / f"{name}.json").read_text())["sha256"]
        assert json.loads((tmp_path / f"{name}.json").read_text())["sha256"] == first
    # a damaged file is refused, not read
    damaged = tmp_path / "hopper-medium.npz"
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="does not match its record"):
        load_dataset("hopper-medium", root=tmp_path)


def test_policy_fits_a_generated_set_and_acts_in_the_simulator(tiny_sets):
    from aaren_ts.rl.evaluate import evaluate_policy

    data = load_dataset("hopper-medium-replay", root=tiny_sets)
    policy = DecisionAaren(d_model=16, max_updates=10, batch_size=8, random_state=0).fit(data)
    returns = evaluate_policy(policy, "hopper", target_return=100.0, episodes=3, seed=5)
    again = evaluate_policy(policy, "hopper", target_return=100.0, episodes=3, seed=5)
    assert returns.shape == (3,) and np.isfinite(returns).all()
    np.testing.assert_array_equal(returns, again)


def test_making_a_task_leaves_no_mujoco_log_and_prints_nothing(tmp_path, monkeypatch, capfd):
    _needs_rl()
    import mujoco

    from aaren_ts.rl.datasets import make_env

    monkeypatch.chdir(tmp_path)
    before = mujoco.get_mju_user_warning()
    make_env("HalfCheetah-v5").close()  # its model file triggers MuJoCo's settotalmass notice
    out, err = capfd.readouterr()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists() and "settotalmass" not in out + err
    assert mujoco.get_mju_user_warning() is before


def test_selection_script_fits_and_scores_each_setting(tiny_sets):
    from pathlib import Path

    from warm_interpreter import run_python

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "rl_select.py"
    settings = [
        '{"max_updates": 5, "d_model": 16}',
        '{"max_updates": 5, "d_model": 16, "n_heads": 1}',
    ]
    done = run_python([str(script), "hopper-medium", *settings, "--episodes", "2",
                       "--root", str(tiny_sets)], timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all(" score " in line and " +- " in line for line in lines)
