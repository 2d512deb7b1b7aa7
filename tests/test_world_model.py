"""JEPA world model: shapes, differentiable rollouts, training on real PointMaze data, collapse detection."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import envs
from world_models import (
    JEPAWorldModel,
    RunningNormalizer,
    WorldModelConfig,
    collapse_diagnostics,
    make_encoder,
    num_parameters,
)

# Latent 16: a healthy model spreads over ~10 dims (effective rank) with per-dim std ~0.5; a
# collapsed one shrinks towards a point. The floor is what the tests call "not collapsed".
STD_MIN_FLOOR = 0.1
RANK_FLOOR = 3.0
TRAIN_EPISODES, TEST_EPISODES, EPISODE_STEPS = 72, 8, 25
STEPS, BATCH, HORIZON = 300, 64, 5


def _cfg(**overrides) -> WorldModelConfig:
    base = dict(obs_dim=4, action_dim=2, latent_dim=16, hidden_dim=64, measurement_dims={"agent_xy": 2},
                lr=1e-3, seed=0)
    return WorldModelConfig(**{**base, **overrides})


def _collapsed(diag: dict[str, float]) -> bool:
    return diag["latent/std_min"] < STD_MIN_FLOOR or diag["latent/effective_rank"] < RANK_FLOOR


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Random-action episodes from the open PointMaze: obs [E, L+1, 4], actions [E, L, 2], agent_xy [E, L+1, 2]."""
    env = envs.make("oda/PointMaze-v0", layout="open", seed=0)
    rng = np.random.default_rng(0)
    obs, actions, xy = [], [], []
    for episode in range(TRAIN_EPISODES + TEST_EPISODES):
        o, info = env.reset(seed=episode)
        ep_obs, ep_act, ep_xy = [o], [], [info["measurements"]["agent_xy"]]
        for _ in range(EPISODE_STEPS):
            a = rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
            o, _, _, _, info = env.step(a)
            ep_obs.append(o)
            ep_act.append(a)
            ep_xy.append(info["measurements"]["agent_xy"])
        obs.append(ep_obs)
        actions.append(ep_act)
        xy.append(ep_xy)
    env.close()
    return {"obs": np.asarray(obs, np.float32), "actions": np.asarray(actions, np.float32),
            "agent_xy": np.asarray(xy, np.float32)}


def _batch(data: dict[str, np.ndarray], rng: np.random.Generator):
    e = rng.integers(0, TRAIN_EPISODES, BATCH)[:, None]
    idx = rng.integers(0, EPISODE_STEPS - HORIZON + 1, BATCH)[:, None] + np.arange(HORIZON + 1)
    return (torch.as_tensor(data["obs"][e, idx]), torch.as_tensor(data["actions"][e, idx[:, :-1]]),
            {"agent_xy": torch.as_tensor(data["agent_xy"][e, idx])})


def _train(data, model: JEPAWorldModel, steps: int = STEPS) -> list[dict[str, float]]:
    torch.set_num_threads(1)
    model.update_normalizer(torch.as_tensor(data["obs"][:TRAIN_EPISODES]))
    optimizer = model.make_optimizer()
    rng = np.random.default_rng(0)
    return [model.train_step(optimizer, *_batch(data, rng)) for _ in range(steps)]


def _held_out(data, model: JEPAWorldModel) -> tuple[dict[str, float], float]:
    """Collapse diagnostics on held-out latents and the agent_xy readout MSE relative to the xy variance."""
    obs = torch.as_tensor(data["obs"][TRAIN_EPISODES:])
    xy = torch.as_tensor(data["agent_xy"][TRAIN_EPISODES:])
    with torch.no_grad():
        z = model.encode(obs)
        mse = (model.readout(z)["agent_xy"] - xy).pow(2).mean()
    return collapse_diagnostics(z), (mse / xy.reshape(-1, 2).var(0).mean()).item()


@pytest.fixture(scope="module")
def trained(data):
    """The default objective: JEPA + metric shaping (smoothness, inverse dynamics)."""
    model = JEPAWorldModel(_cfg())
    return model, _train(data, model)


PLAIN = {"smooth_weight": 0.0, "idm_weight": 0.0}


@pytest.fixture(scope="module")
def plain(data):
    """The plain JEPA objective: rollout prediction + VICReg terms only."""
    model = JEPAWorldModel(_cfg(**PLAIN))
    return model, _train(data, model)


# ----- shapes, rollouts ----------------------------------------------------------------------
def test_shapes_and_latent_normalisation():
    model = JEPAWorldModel(_cfg(latent_dim=8, hidden_dim=32))
    obs, a = torch.randn(5, 3, 4), torch.rand(5, 2) * 2 - 1
    z = model.encode(obs)
    assert z.shape == (5, 3, 8) and model.encode_target(obs).shape == (5, 3, 8)
    # LayerNorm without affine: every latent has zero mean and unit second moment over its dims.
    torch.testing.assert_close(z.pow(2).mean(-1), torch.ones(5, 3), atol=1e-3, rtol=0)
    z_next = model.predict(z[:, 0], a)
    assert z_next.shape == (5, 8)
    # Zero-initialised residual: the untrained predictor is the identity (up to LayerNorm's eps).
    torch.testing.assert_close(z_next, z[:, 0], atol=1e-3, rtol=0)
    assert model.rollout(z[:, 0], torch.zeros(5, 7, 2)).shape == (5, 7, 8)
    assert model.readout(z)["agent_xy"].shape == (5, 3, 2) and model.readout_keys == ("agent_xy",)
    assert list(model.readout(z, keys=["agent_xy"])) == ["agent_xy"] and model.readout(z, keys=()) == {}
    with pytest.raises(KeyError, match="no readout head for \\['ee_pos'\\]"):
        model.readout(z, keys=["ee_pos"])
    with pytest.raises(ValueError, match="obs_dim=4"):
        model.encode(torch.randn(2, 5))
    with pytest.raises(ValueError, match="actions"):
        model.rollout(z[:, 0], torch.zeros(4, 7, 2))
    with pytest.raises(ValueError, match="action_dim"):
        JEPAWorldModel(WorldModelConfig(obs_dim=4))
    with pytest.raises(ValueError, match="unknown encoder 'vit'"):
        make_encoder("vit", _cfg())


def test_input_weights_scale_the_normalised_observation_and_travel_with_the_config():
    weights = [1.0, 1.0, 0.0, 2.0]
    model = JEPAWorldModel(_cfg(input_weights=weights))
    model.update_normalizer(torch.randn(256, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]))
    obs = torch.randn(6, 4)
    moved = obs.clone()
    moved[:, 2] += 5.0  # a feature weighted 0 is not seen, by the online or the target encoder
    torch.testing.assert_close(model.encode(moved), model.encode(obs))
    torch.testing.assert_close(model.encode_target(moved), model.encode_target(obs))
    # the same as an unweighted encoder fed the weighted normalised observation
    x = model.encoder.normalizer(obs) * torch.tensor(weights)
    torch.testing.assert_close(model.encode(obs), torch.nn.functional.layer_norm(model.encoder.net(x), (16,)))
    assert "encoder.input_weights" not in model.state_dict()  # kept in the config, which checkpoints carry
    assert WorldModelConfig.from_dict(model.cfg.to_dict()).input_weights == weights
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0, 1.0], [1.0, float("nan"), 1.0, 1.0], [1, True, 1, 1]):
        with pytest.raises(ValueError, match="input_weights"):
            JEPAWorldModel(_cfg(input_weights=bad))
    with pytest.raises(ValueError, match="input_weights"):
        _cfg(encoder="conv", obs_shape=[8, 8, 3], input_weights=[1.0] * 4).validate()


def test_rollout_is_differentiable_and_batches_thousands(trained):
    model, _ = trained
    z0 = model.encode(torch.randn(1, 4)).detach().expand(2048, -1)
    actions = (torch.rand(2048, 10, 2) * 2 - 1).requires_grad_(True)
    z = model.rollout(z0, actions)
    assert z.shape == (2048, 10, 16) and torch.isfinite(z).all()
    (z[:, -1] - z0).pow(2).sum().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0
    assert actions.grad[:, 0].abs().sum() > 0  # the first action influences the last latent


# ----- training on real data -----------------------------------------------------------------
def test_jepa_loss_falls_without_collapse_and_readout_works(data, trained):
    model, logs = trained
    first, last = logs[0], logs[-1]
    assert last["loss/pred"] < 0.2 * first["loss/pred"], (first["loss/pred"], last["loss/pred"])
    # Scale-free too: error relative to the spread of the targets falls.
    assert last["loss/pred_rel"] < 0.2 * first["loss/pred_rel"]
    assert not _collapsed(last), last
    diag, readout_rel = _held_out(data, model)
    assert not _collapsed(diag), diag
    assert readout_rel < 0.05, readout_rel  # held-out agent_xy: < 5% of its variance left unexplained


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    return torch.corrcoef(torch.stack([ra, rb]))[0, 1].item()


def _distance_agreement(data, model: JEPAWorldModel) -> float:
    """Spearman correlation of latent L2 distance and true xy distance over held-out state pairs."""
    obs = torch.as_tensor(data["obs"][TRAIN_EPISODES:]).flatten(0, 1)
    xy = torch.as_tensor(data["agent_xy"][TRAIN_EPISODES:]).reshape(-1, 2)
    i, j = torch.randint(0, len(obs), (2, 4000), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model.encode(obs)
    return _spearman((z[i] - z[j]).norm(dim=-1), (xy[i] - xy[j]).norm(dim=-1))


def test_metric_shaping_makes_latent_distance_follow_state_distance(data, trained, plain):
    """What the planner ranks by: with smoothness + inverse dynamics (the default), latent L2
    distance orders state pairs by their true distance far better than the plain JEPA objective,
    which spreads the latent over more dimensions (higher effective rank) with no metric meaning."""
    shaped, plain = trained[0], plain[0]
    assert plain.idm_head is None and shaped.idm_head is not None
    plain_diag, _ = _held_out(data, plain)
    assert plain_diag["latent/effective_rank"] > 6.0, plain_diag
    rho_shaped, rho_plain = _distance_agreement(data, shaped), _distance_agreement(data, plain)
    assert rho_shaped > 0.85 and rho_shaped > rho_plain + 0.1, (rho_shaped, rho_plain)


def test_readout_probes_do_not_shape_the_representation(data):
    """Probes see detached latents: changing readout_weight leaves the encoder's training unchanged."""
    runs = []
    for weight in (0.0, 10.0):
        model = JEPAWorldModel(_cfg(readout_weight=weight))
        _train(data, model, steps=5)
        runs.append(model.encode(torch.as_tensor(data["obs"][:2])))
    torch.testing.assert_close(runs[0], runs[1])


def test_probes_also_learn_to_read_predicted_latents(data):
    """By default the probes' loss covers the predictor's latents too (what guardrails read); off, only encodings."""
    batch = _batch(data, np.random.default_rng(2))
    for flag in (True, False):
        model = JEPAWorldModel(_cfg(readout_on_predicted=flag))
        _, logs = model.loss(*batch)
        expected = logs["readout/agent_xy"] + (logs["readout/agent_xy_pred"] if flag else 0.0)
        assert logs["loss/readout"] == pytest.approx(expected, rel=1e-5)


def test_relative_readout_error_tells_what_the_latent_keeps_from_what_it_lacks(data):
    """``readout/<name>_rel`` (MSE over the measurement's variance) is near 0 for a quantity the latent
    encodes (the agent's position) and near 1 for one it cannot (small noise unrelated to the observation:
    its plain MSE is tiny, so only the relative error tells that nothing of it is kept)."""
    model = JEPAWorldModel(_cfg(measurement_dims={"agent_xy": 2, "noise": 2}))
    model.update_normalizer(torch.as_tensor(data["obs"][:TRAIN_EPISODES]))
    optimizer, rng, gen = model.make_optimizer(), np.random.default_rng(0), torch.Generator().manual_seed(0)

    def batch():
        obs, actions, meas = _batch(data, rng)
        return obs, actions, {**meas, "noise": torch.randn(meas["agent_xy"].shape, generator=gen) * 0.1}

    for _ in range(STEPS):
        model.train_step(optimizer, *batch())
    obs, actions, meas = batch()
    _, logs = model.loss(obs, actions, meas)
    assert logs["readout/agent_xy_rel"] < 0.15, logs["readout/agent_xy_rel"]
    assert logs["readout/noise_rel"] > 0.8, logs["readout/noise_rel"]


def test_temporal_variance_hinge_asks_each_dimension_to_vary_along_sequences(data):
    """Reacher's observation carries its target, constant within an episode: batch variance + smoothness
    favour encoding such constants. The temporal hinge measures spread along each sequence instead:
    full (target - ~0) on sequences that never change, lower on moving ones, absent when its weight is 0."""
    obs, actions, meas = _batch(data, np.random.default_rng(2))
    model = JEPAWorldModel(_cfg(temporal_var_weight=1.0, temporal_var_target=0.3))
    frozen = obs[:, :1].expand_as(obs).contiguous()  # every sequence stands still: latents constant in time
    _, logs_frozen = model.loss(frozen, actions, meas)
    _, logs_moving = model.loss(obs, actions, meas)
    assert logs_frozen["loss/temporal_var"] == pytest.approx(0.3 - 0.01, abs=1e-4)  # sqrt(0 + 1e-4) = 0.01
    assert logs_moving["loss/temporal_var"] < logs_frozen["loss/temporal_var"] - 0.01
    assert "loss/temporal_var" not in JEPAWorldModel(_cfg()).loss(obs, actions, meas)[1]


def test_no_stop_gradient_and_no_regulariser_collapses(data, trained):
    """Without var/cov terms and with the gradient flowing through the target, latents shrink to a point."""

    class NoStopGradient(JEPAWorldModel):
        def encode_target(self, obs):
            return self.encode(obs)

    model = NoStopGradient(_cfg(var_weight=0.0, cov_weight=0.0, ema_tau=0.0, lr=3e-3, **PLAIN))
    logs = _train(data, model)
    diag, _ = _held_out(data, model)
    assert _collapsed(logs[-1]) and _collapsed(diag), diag
    assert logs[-1]["latent/std_mean"] < 0.2 * trained[1][-1]["latent/std_mean"]
    assert logs[-1]["loss/pred"] < 1e-3  # the predictive loss alone is "solved" by collapsing


def test_regulariser_keeps_more_dimensions_than_stop_gradient_alone(data, plain):
    """With the stop-gradient target but no var/cov, no full collapse was observed, but fewer dims are used."""
    model = JEPAWorldModel(_cfg(var_weight=0.0, cov_weight=0.0, ema_tau=0.0, lr=1e-2, **PLAIN))
    _train(data, model)
    diag, _ = _held_out(data, model)
    healthy, _ = _held_out(data, plain[0])
    assert diag["latent/effective_rank"] < healthy["latent/effective_rank"] - 2.0, (diag, healthy)


# ----- determinism, checkpoints, normaliser --------------------------------------------------
def test_same_seed_same_parameters_and_loss(data):
    obs, actions, meas = _batch(data, np.random.default_rng(1))
    a, b = JEPAWorldModel(_cfg(seed=3)), JEPAWorldModel(_cfg(seed=3))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert a.loss(obs, actions, meas)[1] == b.loss(obs, actions, meas)[1]
    c = JEPAWorldModel(_cfg(seed=4))
    assert not torch.equal(a.encoder.net[0].weight, c.encoder.net[0].weight)


def test_state_dict_round_trip(data, trained):
    model, _ = trained
    assert model.encoder.normalizer.count.item() == TRAIN_EPISODES * (EPISODE_STEPS + 1)
    restored = JEPAWorldModel(WorldModelConfig.from_dict(model.cfg.to_dict()))
    restored.load_state_dict(model.state_dict())
    obs, actions, meas = _batch(data, np.random.default_rng(2))
    for fn in ("encode", "encode_target"):
        torch.testing.assert_close(getattr(restored, fn)(obs), getattr(model, fn)(obs), rtol=0, atol=0)
    z0 = model.encode(obs[:, 0])
    torch.testing.assert_close(restored.rollout(z0, actions), model.rollout(z0, actions), rtol=0, atol=0)
    assert restored.loss(obs, actions, meas)[1] == model.loss(obs, actions, meas)[1]
    with pytest.raises(ValueError, match="unknown WorldModelConfig keys"):
        WorldModelConfig.from_dict({**model.cfg.to_dict(), "latnet_dim": 3})


def test_ema_target_moves_towards_online():
    model = JEPAWorldModel(_cfg(ema_tau=0.75))
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.target_encoder.parameters()]
    model.update_target()
    for b, t, o in zip(before, model.target_encoder.parameters(), model.encoder.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)
        assert not t.requires_grad
    assert num_parameters(model, trainable_only=True) == num_parameters(model) - num_parameters(model.target_encoder)


def test_running_normalizer_matches_numpy_and_clamps():
    x = np.random.default_rng(0).normal([1.0, -2.0, 5.0], [0.5, 3.0, 0.0], size=(300, 3)).astype(np.float32)
    norm = RunningNormalizer(3, min_std=1e-2, clip=10.0)
    for chunk in np.array_split(x, 7):
        norm.update(torch.as_tensor(chunk))
    np.testing.assert_allclose(norm.mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), x.var(0), rtol=1e-4, atol=1e-6)
    out = norm(torch.as_tensor(x) + torch.tensor([0.0, 0.0, 1.0]))  # constant feature moved by 1: std clamped
    assert torch.isfinite(out).all() and out[:, 2].abs().max() <= 10.0


def test_collapse_diagnostics_on_known_clouds():
    g = torch.Generator().manual_seed(0)
    iso = collapse_diagnostics(torch.randn(4000, 8, generator=g))
    assert iso["latent/effective_rank"] > 7.5 and abs(iso["latent/std_min"] - 1.0) < 0.1
    line = collapse_diagnostics(torch.randn(4000, 1, generator=g) * torch.ones(1, 8))
    assert line["latent/effective_rank"] < 1.01
    point = collapse_diagnostics(torch.ones(100, 8) + 1e-7 * torch.randn(100, 8, generator=g))
    assert point["latent/effective_rank"] == 0.0 and point["latent/std_min"] < 1e-6


def test_predictor_width_is_its_own_setting_and_old_configs_keep_hidden_dim():
    widths = lambda m: [layer.out_features for layer in m.predictor.net if isinstance(layer, torch.nn.Linear)]  # noqa: E731
    assert widths(JEPAWorldModel(_cfg(hidden_dim=32))) == [32, 32, 16]
    model = JEPAWorldModel(_cfg(hidden_dim=32, predictor_hidden=48, predictor_layers=3))
    assert widths(model) == [48, 48, 48, 16]
    assert [layer.out_features for layer in model.encoder.net if isinstance(layer, torch.nn.Linear)][0] == 32
    old = _cfg(hidden_dim=32).to_dict()
    del old["predictor_hidden"]  # a checkpoint written before the setting existed
    assert WorldModelConfig.from_dict(old).predictor_hidden == 0
    with pytest.raises(ValueError, match="predictor_hidden"):
        _cfg(predictor_hidden=-1).validate()


def test_config_dict_round_trip():
    cfg = _cfg(measurement_dims={"agent_xy": 2, "agent_speed": 1})
    assert WorldModelConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.asdict(cfg) == cfg.to_dict()


def test_bfloat16_training_learns_and_keeps_float32_parameters(data):
    model = JEPAWorldModel(_cfg(train_precision="bfloat16"))
    logs = _train(data, model, steps=150)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert np.isfinite(logs[-1]["loss/total"]) and logs[-1]["loss/pred"] < 0.3 * logs[0]["loss/pred"]
    assert not _collapsed(logs[-1]), logs[-1]
    with pytest.raises(ValueError, match="train_precision"):
        _cfg(train_precision="float16").validate()


def test_grounded_readouts_shape_the_representation(data):
    """readout_grounding sends the named readout's (variance-relative) error into encoder and predictor:
    the encodings then differ from the pure-probe run, and a latent too small to keep everything keeps
    the grounded measurement better on held-out data."""
    batch = _batch(data, np.random.default_rng(2))
    _, logs = JEPAWorldModel(_cfg(readout_grounding=["agent_xy"])).loss(*batch)
    assert logs["loss/grounding"] > 0 and "loss/grounding" not in JEPAWorldModel(_cfg()).loss(*batch)[1]
    errors = {}
    for grounding in ([], ["agent_xy"]):
        model = JEPAWorldModel(_cfg(latent_dim=4, readout_grounding=grounding))
        _train(data, model, steps=200)
        errors[bool(grounding)] = _held_out(data, model)[1]
    assert errors[True] < 0.5 * errors[False], errors
    with pytest.raises(ValueError, match=r"readout_grounding names \['ee_speed'\]"):
        JEPAWorldModel(_cfg(readout_grounding=["ee_speed"]))
