"""DecisionAaren on toy trajectories (no simulator): streams equal one parallel pass, memory
per step, return conditioning on known-truth data, bad input, persistence, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from aaren_ts._checks import InvalidParameterError
from aaren_ts.rl import DecisionAaren

MODES = [(b, k) for b in ("aaren", "transformer", "gru") for k in (None, 6)]


def _episode(rng, length, obs_dim=3, act_dim=2):
    obs = rng.normal(size=(length, obs_dim)).astype(np.float32)
    return {
        "observations": obs,
        "actions": np.tanh(1.5 * obs[:, :act_dim]),
        "rewards": rng.uniform(size=length),
    }


@pytest.fixture(scope="module")
def episodes():
    rng = np.random.default_rng(0)
    return [_episode(rng, int(rng.integers(8, 40))) for _ in range(10)]


def _small(**kwargs):
    base = dict(d_model=16, n_heads=2, max_updates=20, batch_size=4, dropout=0.0, random_state=0)
    return DecisionAaren(**{**base, **kwargs})


@pytest.mark.parametrize("backbone,context_length", MODES)
def test_stream_equals_one_parallel_pass(episodes, backbone, context_length):
    policy = _small(backbone=backbone, context_length=context_length).fit(episodes)
    traj = max(episodes, key=lambda e: len(e["rewards"]))  # longer than the window
    reference = policy.predict(traj, target_return=7.5)
    stream = policy.start_episode(7.5)
    streamed = []
    for obs, action, reward in zip(
        traj["observations"], traj["actions"], traj["rewards"], strict=True
    ):
        streamed.append(stream.act(obs))
        stream.observe(reward, action=action)
    np.testing.assert_allclose(np.array(streamed), reference, atol=1e-5)
    assert stream.steps == len(traj["rewards"])
    np.testing.assert_allclose(stream.returns_to_go, 7.5 - traj["rewards"].sum(), rtol=1e-6)


@pytest.mark.parametrize("backbone,context_length", MODES)
def test_batched_stream_equals_single_streams(episodes, backbone, context_length):
    policy = _small(backbone=backbone, context_length=context_length).fit(episodes)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(12, 3, 3))  # 12 steps, 3 episodes side by side
    rewards = rng.uniform(size=(12, 3))
    targets = np.array([1.0, 5.0, 9.0])
    batched = policy.start_episode(targets, n_envs=3)
    singles = [policy.start_episode(t) for t in targets]
    for step in range(12):
        together = batched.act(obs[step])
        batched.observe(rewards[step])
        for i, single in enumerate(singles):
            np.testing.assert_allclose(single.act(obs[step, i]), together[i], atol=1e-5)
            single.observe(rewards[step, i])


@pytest.mark.parametrize(
    "backbone,context_length,grows",
    [("aaren", None, False), ("gru", None, False), ("transformer", None, True),
     ("transformer", 6, False)],
)  # fmt: skip
def test_memory_per_stream_against_episode_length(episodes, backbone, context_length, grows):
    policy = _small(backbone=backbone, context_length=context_length).fit(episodes)
    stream = policy.start_episode(3.0)
    sizes = []
    for _ in range(60):
        stream.act(np.zeros(3))
        stream.observe(0.1)
        sizes.append(stream.state_nbytes)
    if grows:
        assert sizes[-1] > 5 * sizes[9]  # a KV cache: linear in the steps
    else:
        assert sizes[-1] == sizes[9] > 0  # constant once the window (if any) is full


@pytest.mark.parametrize("backbone,context_length", [("aaren", None), ("gru", None),
                                                      ("transformer", 10)])  # fmt: skip
def test_return_conditioning_picks_the_behaviour_that_earned_the_return(backbone, context_length):
    """Known truth: half the episodes act +0.8 and earn 1 per step, half act -0.8 and earn 0.
    Asked for the high return the policy must act positively; asked for zero, negatively."""
    rng = np.random.default_rng(2)
    data = []
    for i in range(24):
        good = i % 2 == 0
        obs = rng.normal(size=(20, 2)).astype(np.float32)
        action = np.full((20, 1), 0.8 if good else -0.8) + rng.normal(0, 0.05, (20, 1))
        data.append({"observations": obs, "actions": action, "rewards": np.full(20, float(good))})
    policy = DecisionAaren(
        backbone=backbone, context_length=context_length, d_model=32, n_heads=2,
        max_updates=150, batch_size=8, random_state=0, dropout=0.0,
    ).fit(data)  # fmt: skip
    for target, sign in ((20.0, 1), (0.0, -1)):
        stream = policy.start_episode(target)
        actions = []
        for _ in range(20):
            actions.append(stream.act(rng.normal(size=2)))
            stream.observe(1.0 if sign > 0 else 0.0)
        assert sign * np.mean(actions) > 0.5, (backbone, target, np.mean(actions))


def test_flat_d4rl_layout_equals_the_list_of_episodes(episodes):
    flat = {
        key: np.concatenate([e[key] for e in episodes])
        for key in ("observations", "actions", "rewards")
    }
    ends = np.cumsum([len(e["rewards"]) for e in episodes]) - 1
    flat["terminals"] = np.zeros(len(flat["rewards"]), bool)
    flat["timeouts"] = np.zeros(len(flat["rewards"]), bool)
    flat["terminals"][ends[::2]] = True
    flat["timeouts"][ends[1::2]] = True
    a = _small().fit(episodes)
    b = _small().fit(flat)
    assert b.n_trajectories_ == len(episodes)
    for pa, pb in zip(a.network_.parameters(), b.network_.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


def test_minari_episode_objects_with_final_observation(episodes):
    class Episode:  # Minari's EpisodeData: T + 1 observations, T actions and rewards
        def __init__(self, e):
            self.observations = np.vstack([e["observations"], np.zeros((1, 3))])
            self.actions, self.rewards = e["actions"], e["rewards"]

    a = _small().fit(episodes)
    b = _small().fit([Episode(e) for e in episodes])
    np.testing.assert_allclose(a.predict(episodes[0]), b.predict(episodes[0]), atol=1e-6)


def _bad_trajectories(good):
    e = good[0]
    no_actions = {k: v for k, v in e.items() if k != "actions"}
    huge = e["observations"].astype(np.float64) * 1e39  # finite in float64
    return {
        "a bare array": (np.zeros((5, 3)), TypeError, "list of dicts"),
        "a string": ("trajectories.npz", TypeError, "str"),
        "an empty list": ([], ValueError, "empty"),
        "a missing field": ([no_actions], ValueError, "'actions'"),
        "NaN observations": ([{**e, "observations": e["observations"] * np.nan}], ValueError,
                             "NaN"),
        "infinite rewards": ([{**e, "rewards": np.full(len(e["rewards"]), np.inf)}], ValueError,
                             "infinite"),
        "text actions": ([{**e, "actions": np.full(e["actions"].shape, "x")}], TypeError,
                         "numeric"),
        "mismatched lengths": ([{**e, "rewards": e["rewards"][:-2]}], ValueError, "one row"),
        "an empty episode": ([{k: v[:0] for k, v in e.items()}], ValueError, "empty"),
        "3-d observations": ([{**e, "observations": e["observations"][:, :, None]}], ValueError,
                             "shape"),
        "changing widths": ([e, {**good[1], "observations": good[1]["observations"][:, :2]}],
                            ValueError, "trajectory 1"),
        "complex rewards": ([{**e, "rewards": e["rewards"] + 1j}], TypeError, "real"),
        "an episode of None": ([None], TypeError, "NoneType"),
        # the float32 cast had turned these into inf, reported as "NaN or infinite values"
        "observations beyond float32": ([{**e, "observations": huge}], ValueError,
                                        "beyond float32's range"),
        "boolean observations": ([{**e, "observations": e["observations"] > 0}], TypeError,
                                 "holds booleans"),
        "half a terminal": ({**_flat(good), "terminals": np.full(len(_flat(good)["rewards"]),
                                                                  0.5)},
                            ValueError, r"terminals must be booleans or 0/1, got .*0\.5"),
        "text timeouts": ({**_flat(good), "timeouts": np.full(len(_flat(good)["rewards"]), "no")},
                          TypeError, "timeouts must be booleans or 0/1"),
    }  # fmt: skip


def _flat(episodes):
    """The episodes as one D4RL-style dict of flat arrays, each ending with a terminal."""
    flat = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
    ends = np.cumsum([len(e["rewards"]) for e in episodes]) - 1
    flat["terminals"] = np.isin(np.arange(len(flat["rewards"])), ends)
    return flat


def test_bad_trajectories_get_named_errors_and_leave_the_policy_as_it_was(episodes):
    policy = _small().fit(episodes)
    before = {k: v.clone() for k, v in policy.network_.state_dict().items()}
    reference = policy.predict(episodes[0])
    for what, (data, error, text) in _bad_trajectories(episodes).items():
        with pytest.raises(error, match=text):
            policy.fit(data)
        for key, value in policy.network_.state_dict().items():
            torch.testing.assert_close(value, before[key], msg=what)
    np.testing.assert_array_equal(policy.predict(episodes[0]), reference)


@pytest.mark.parametrize(
    "params",
    [{"d_model": 0}, {"backbone": "lstm"}, {"context_length": 0}, {"context_length": 2.5},
     {"max_updates": True}, {"lr": -1.0}, {"dropout": 1.0}, {"return_scale": 0.0},
     {"device": "tpu"}, {"n_heads": 3}, {"random_state": "abc"}, {"recency": "yes"},
     {"n_threads": 0}],
)  # fmt: skip
def test_bad_parameters_are_named(episodes, params):
    name = next(iter(params))
    with pytest.raises(InvalidParameterError, match=name):
        DecisionAaren(**params).fit(episodes)


def test_stream_misuse_and_bad_observations(episodes):
    with pytest.raises(NotFittedError):
        DecisionAaren().start_episode(1.0)
    policy = _small().fit(episodes)
    stream = policy.start_episode(2.0)
    with pytest.raises(RuntimeError, match="call act first"):
        stream.observe(1.0)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        stream.act(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        stream.act(np.array([0.0, np.nan, 0.0]))
    stream.act(np.zeros(3))
    with pytest.raises(RuntimeError, match="observe"):
        stream.act(np.zeros(3))
    with pytest.raises(ValueError, match="reward"):
        stream.observe([1.0, 2.0])
    stream.observe(1.0)
    for target, error in ((np.nan, ValueError), ("high", TypeError), (True, TypeError)):
        with pytest.raises(error, match="target_return"):
            policy.start_episode(target)
    with pytest.raises(ValueError, match="n_envs"):
        policy.start_episode(1.0, n_envs=0)
    # predict's target_return is checked as start_episode's (text was parsed, NaN acted on)
    for target, error in ((np.nan, ValueError), ("1", TypeError)):
        with pytest.raises(error, match="target_return"):
            policy.predict(episodes[0], target_return=target)


@pytest.mark.parametrize("backbone,context_length", [("aaren", None), ("transformer", 6)])
def test_an_observation_that_overflows_inside_the_network_leaves_the_stream_as_it_was(
    episodes, backbone, context_length
):
    """Within float32's range but far outside the data (1e38 after scaling): the policy
    answered NaN actions. Now a named ValueError, and the stream (its state, or its window)
    is as before: the next valid steps act as a stream that never saw the bad one."""
    policy = _small(backbone=backbone, context_length=context_length).fit(episodes)
    steps = [(np.full(3, 0.1 * i), 0.5) for i in range(8)]  # past the window's length
    clean, hit = policy.start_episode(5.0), policy.start_episode(5.0)
    for i, (obs, reward) in enumerate(steps):
        if i == 5:
            with pytest.raises(ValueError, match="NaN or inf actions"):
                hit.act(np.array([1e38, 0.0, 0.0]))
            assert hit.steps == 5
        np.testing.assert_array_equal(hit.act(obs), clean.act(obs))
        hit.observe(reward)
        clean.observe(reward)
    with pytest.raises(ValueError, match="NaN or inf actions"):
        policy.predict({**episodes[0], "observations": episodes[0]["observations"] * 1e37})
    with pytest.raises(ValueError, match="columns"):
        policy.predict({**episodes[0], "observations": np.zeros((len(episodes[0]["rewards"]), 5))})


def test_save_load_round_trip_and_damaged_files(episodes, tmp_path):
    policy = _small(backbone="aaren", context_length=None).fit(episodes)
    path = tmp_path / "policy.safetensors"
    policy.save(path)
    loaded = DecisionAaren.load(path, device="cpu")
    assert loaded.get_params() == {**policy.get_params(), "device": "cpu"}
    np.testing.assert_array_equal(loaded.predict(episodes[2]), policy.predict(episodes[2]))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a saved DecisionAaren"):
        DecisionAaren.load(garbage)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, other, metadata={"format": "something else"})
    with pytest.raises(ValueError, match="not a saved DecisionAaren"):
        DecisionAaren.load(other)
    with pytest.raises(NotFittedError):
        DecisionAaren().save(tmp_path / "unfitted.safetensors")


def test_random_state_fixes_the_fit_and_clone_keeps_the_parameters(episodes):
    a, b = _small(random_state=3).fit(episodes), _small(random_state=3).fit(episodes)
    c = _small(random_state=4).fit(episodes)
    np.testing.assert_array_equal(a.predict(episodes[1]), b.predict(episodes[1]))
    assert not np.allclose(a.predict(episodes[1]), c.predict(episodes[1]))
    assert clone(a).get_params() == a.get_params()
    assert not hasattr(clone(a), "network_")


def test_verbose_shows_progress(episodes, capsys):
    pytest.importorskip("tqdm", reason="tqdm draws the bar (dev extra)")
    _small(verbose=True).fit(episodes)
    assert "update" in capsys.readouterr().err


def test_training_streams_cover_every_step_once_per_pass_and_restart_at_episode_starts():
    # rtg encodes (episode, step), so each yielded row says which step of which episode it is
    lengths = torch.tensor([5, 23, 1, 40, 12, 7])
    longest = int(lengths.max())
    code = torch.arange(len(lengths))[:, None] * 1000.0 + torch.arange(longest)
    data = {
        "rtg": code,
        "obs": torch.zeros(len(lengths), longest, 2),
        "actions": torch.zeros(len(lengths), longest, 1),
        "lengths": lengths,
    }
    policy = DecisionAaren(batch_size=3, segment_length=4)
    batches = policy._streams(data, torch.Generator().manual_seed(0))
    seen, previous = [], None
    for _ in range(60):
        (rtg, _, _, t, mask), fresh = next(batches)
        assert rtg.shape == (3, 4) and fresh.shape == (3,)
        episode = (rtg[:, 0] // 1000).long()
        for row in range(3):
            real = mask[row].bool()
            steps = t[row][real].tolist()
            assert (rtg[row][real] == episode[row] * 1000.0 + t[row][real]).all()
            if fresh[row]:  # a restarted row begins its episode at step 0
                assert steps[0] == 0
            else:  # a carried row goes on where it stopped, in the same episode
                assert episode[row] == previous[0][row] and steps[0] == previous[1][row] + 4
            seen += [(int(episode[row]), s) for s in steps]
        previous = (episode, t[:, 0])
    # the shuffled passes: every step of every episode equally often, up to the pass in flight
    counts = torch.zeros(len(lengths), longest)
    for e, s in seen:
        counts[e, s] += 1
    valid = torch.arange(longest)[None] < lengths[:, None]
    assert counts[~valid].sum() == 0
    per_episode = counts.sum(1) / lengths
    assert per_episode.min() >= per_episode.max() - 3  # each pass reads every episode whole


@pytest.mark.parametrize("backbone", ["aaren", "gru"])
def test_restarted_rows_equal_a_fresh_start_and_the_others_carry_on(backbone):
    from aaren_ts.nn import make_backbone
    from aaren_ts.rl.policy import _restart_rows

    torch.manual_seed(0)
    net = make_backbone(backbone, d_model=8, n_layers=2, n_heads=2).eval()
    _, state = net(torch.randn(3, 5, 8))
    restart = torch.tensor([True, False, True])
    x = torch.randn(3, 4, 8)
    out, _ = net(x, _restart_rows(net, state, restart))
    fresh, _ = net(x[restart])
    torch.testing.assert_close(out[restart], fresh)
    carried, _ = net(x, state)
    torch.testing.assert_close(out[1], carried[1])
    assert not torch.allclose(out[0], carried[0])
