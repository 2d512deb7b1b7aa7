"""Latent JEPA world model: encoder, EMA target encoder, action-conditioned predictor, readout probes.

Training signal (no rewards, no observation reconstruction):
- prediction: from the online encoding of obs[:, 0], roll the predictor through the actions and
  compare step t to the EMA-target encoding of obs[:, t+1]; MSE per step weighted rho**t and
  normalised by the sum of weights (optionally plus a one-step term from every online encoding);
- anti-collapse: VICReg-style variance hinge (per-dim std over the batch >= ``var_target``) and
  covariance (off-diagonal squared / D) on the online encodings of all time steps, together with
  the slowly moving, stop-gradient target encoder;
- metric shaping (on by default; weights 0 give the plain JEPA objective): temporal smoothness of
  consecutive online encodings and an inverse-dynamics head (a_t from z_t, z_{t+1}) whose
  gradient reaches the encoder, so L2 distances between latents follow how many steps apart the
  states are (what the planner ranks by);
- optional: a temporal variance hinge (``temporal_var_weight``: each latent dimension must vary
  along trajectories, not only across episodes) and a learned cost-to-go (``value_hidden``,
  ``world_models.value``, trained on detached latents);
- readout probes: one small MLP per measurement, trained with MSE on DETACHED latents (encoded and,
  by default, predicted ones, which are what guardrails read). They are
  probes: their gradient never reaches the encoder, so the representation is shaped by the JEPA
  objective alone and the probe error honestly measures what the latent already carries;
- optional grounding (``readout_grounding``): named readouts whose error, relative to the
  measurement's variance, does reach encoder and predictor (for what guardrails must read).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_models.coarse import CoarseModel, sample_coarse_windows
from world_models.config import WorldModelConfig
from world_models.encoders import make_encoder, mlp
from world_models.pixel_encoder import ConvEncoder  # noqa: F401  (registers the "conv" encoder)
from world_models.predictor import ResidualPredictor
from world_models.task import Policy, TaskHeads
from world_models.value import GoalValue


def num_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def collapse_diagnostics(z: Tensor) -> dict[str, float]:
    """Spread of latents z [..., D] (leading dims are samples): per-dim std mean/min and effective rank.

    Effective rank (Roy & Vetterli 2007) = exp(entropy of the normalised singular values of the
    centred latents): D for an isotropic cloud, 1 for a line, and defined here as 0 when there is
    no spread at all (total std < 1e-4), where the singular values would be float noise whose
    entropy says nothing.
    """
    z = z.detach().reshape(-1, z.shape[-1]).float()
    if z.shape[0] < 2:
        raise ValueError(f"collapse_diagnostics needs at least 2 samples, got z of shape {tuple(z.shape)}")
    centred = z - z.mean(0)
    std = centred.pow(2).mean(0).sqrt()
    if std.pow(2).sum().sqrt() < 1e-4:
        rank = 0.0
    else:
        s = torch.linalg.svdvals(centred)
        p = s / s.sum()
        rank = math.exp(-(p * torch.log(p.clamp_min(1e-12))).sum().item())
    return {"latent/std_mean": std.mean().item(), "latent/std_min": std.min().item(), "latent/effective_rank": rank}


def variance_covariance(z: Tensor, var_target: float) -> tuple[Tensor, Tensor]:
    """VICReg terms on z [N, D]: mean hinge of per-dim std below ``var_target``; off-diag cov^2 / D."""
    n, d = z.shape
    centred = z - z.mean(0)
    std = (centred.pow(2).sum(0) / max(n - 1, 1) + 1e-4).sqrt()
    var_loss = F.relu(var_target - std).mean()
    cov = centred.T @ centred / max(n - 1, 1)
    off_diag = cov - torch.diag(torch.diagonal(cov))
    return var_loss, off_diag.pow(2).sum() / d


class JEPAWorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[], enabled=cfg.seed is not None):
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
            self.encoder = make_encoder(cfg.encoder, cfg)
            self.predictor = ResidualPredictor(cfg)
            self.readout_heads = nn.ModuleDict({
                name: mlp(cfg.latent_dim, cfg.readout_hidden, dim, 1) for name, dim in cfg.measurement_dims.items()
            })
            # Only built when used, so checkpoints without metric shaping keep their tensor set.
            self.idm_head = mlp(2 * cfg.latent_dim, cfg.hidden_dim, cfg.action_dim, 1) if cfg.idm_weight > 0 else None
            self.value = (GoalValue(cfg.latent_dim, cfg.value_hidden, cfg.value_gamma, cfg.value_expectile,
                                    cfg.value_tau) if cfg.value_hidden > 0 else None)
            self.task = (TaskHeads(cfg.latent_dim, cfg.action_dim, cfg.reward_hidden, cfg.critics, cfg.gamma,
                                   cfg.critic_tau, cfg.policy_hidden, cfg.critic_shapes_latent,
                                   cfg.critic_bootstrap, cfg.critic_target)
                         if cfg.reward_hidden > 0 else None)
            self.coarse = CoarseModel(cfg.latent_dim, cfg.hidden_dim, cfg.coarse_k) if cfg.coarse_k > 0 else None
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self._policy_latents: Tensor | None = None  # the last loss's critic inputs, for the policy's step

    @property
    def policy(self) -> Policy | None:
        """The mode-1 policy of a reward task (it lives with the critic that it ascends), else None."""
        return None if self.task is None else self.task.policy

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    # ----- model -----------------------------------------------------------------------------
    def encode(self, obs: Tensor) -> Tensor:
        """obs [..., obs_dim] -> z [..., D] with the online encoder (input-normalised)."""
        return self.encoder(obs)

    @torch.no_grad()
    def encode_target(self, obs: Tensor) -> Tensor:
        """obs [..., obs_dim] -> z [..., D] with the EMA target encoder (no gradient)."""
        return self.target_encoder(obs)

    def predict(self, z: Tensor, a: Tensor) -> Tensor:
        """One latent step: z [N, D], a [N, A] -> z' [N, D] (pure; any leading dims work)."""
        return self.predictor(z, a)

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """z0 [N, D], actions [N, H, A] -> [N, H, D]; differentiable w.r.t. actions and z0."""
        return self.predictor.rollout(z0, actions)

    @property
    def readout_keys(self) -> tuple[str, ...]:
        """Names of the measurements the readout probes predict."""
        return tuple(self.readout_heads.keys())

    def readout(self, z: Tensor, keys: tuple[str, ...] | list[str] | None = None) -> dict[str, Tensor]:
        """Named measurements predicted from latents z [..., D] -> {name: [..., k]} (only ``keys`` when given:
        a planner's constraint reads a few of them on every candidate)."""
        if keys is None:
            return {name: head(z) for name, head in self.readout_heads.items()}
        unknown = sorted(set(keys) - set(self.readout_heads))
        if unknown:
            raise KeyError(f"no readout head for {unknown}; the world model reads out {sorted(self.readout_heads)}")
        return {name: self.readout_heads[name](z) for name in keys}

    # ----- training --------------------------------------------------------------------------
    def cost_to_go(self, z: Tensor, z_goal: Tensor) -> Tensor:
        """Learned number of steps from latents z [..., D] to z_goal ([..., D] or [D]) (needs value_hidden > 0)."""
        if self.value is None:
            raise RuntimeError("this world model has no value head (WorldModelConfig.value_hidden = 0)")
        return self.value.steps(z, z_goal)

    def loss(self, obs: Tensor, actions: Tensor, measurements: dict[str, Tensor] | None = None,
             diagnostics: bool = True, goals: dict[str, Tensor] | None = None, rewards: Tensor | None = None,
             terminals: Tensor | None = None, coarse_obs: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """obs [B, T+1, obs_dim], actions [B, T, A], measurements {name: [B, T+1, k]} -> (loss, logs).

        Measurements without a readout head are ignored; heads without a measurement add nothing.
        ``goals`` (``obs``, ``next_obs``, ``goal_obs`` [B', obs_dim], ``reached`` [B'] bool, from
        ``EpisodeReplay.sample_goals``) trains the value head on detached online latents.
        ``rewards`` and ``terminals`` [B, T] train the reward head and critic (reward tasks).
        ``coarse_obs`` [B', W+1, obs_dim] (windows of W >= coarse_k steps) trains the coarse model.
        ``diagnostics`` adds the collapse diagnostics to the logs (an SVD: ~10% of a 1M-parameter
        update on CPU, so trainers compute them only every few updates).
        """
        cfg = self.cfg
        dev = self.device
        obs = obs.to(dev, torch.float32)
        actions = actions.to(dev, torch.float32)
        if obs.dim() < 3 or actions.dim() != 3:
            raise ValueError(f"loss expects obs [B, T+1, *obs_shape] and actions [B, T, A], "
                             f"got obs {tuple(obs.shape)} and actions {tuple(actions.shape)}")
        b, t1 = obs.shape[:2]
        if actions.shape[:2] != (b, t1 - 1) or t1 < 2:
            raise ValueError(f"actions {tuple(actions.shape)} must be [B, T, A] with B={b}, T=obs steps - 1 = {t1 - 1}"
                             f" >= 1")
        horizon = t1 - 1

        z_all = self.encode(obs)                               # [B, T+1, D], online, with grad
        z_tgt = self.encode_target(obs[:, 1:])                 # [B, T, D], EMA, no grad
        z_hat = self.rollout(z_all[:, 0], actions)             # [B, T, D]
        step_mse = (z_hat - z_tgt).pow(2).mean(dim=(0, 2))     # [T]
        weights = cfg.rho ** torch.arange(horizon, device=dev, dtype=torch.float32)
        pred = (weights * step_mse).sum() / weights.sum()
        total = pred
        logged: dict[str, Tensor] = {"loss/pred": pred, "loss/pred_first": step_mse[0], "loss/pred_last": step_mse[-1]}
        # Scale-free prediction error: MSE relative to the spread of the targets (0 perfect, ~2 random).
        logged["loss/pred_rel"] = (z_hat - z_tgt).pow(2).mean() / z_tgt.reshape(-1, z_tgt.shape[-1]).var(0).mean()

        if cfg.one_step_weight > 0:
            one_step = (self.predict(z_all[:, :-1], actions) - z_tgt).pow(2).mean()
            total = total + cfg.one_step_weight * one_step
            logged["loss/one_step"] = one_step

        flat = z_all.reshape(-1, z_all.shape[-1])
        var_loss, cov_loss = variance_covariance(flat, cfg.var_target)
        total = total + cfg.var_weight * var_loss + cfg.cov_weight * cov_loss
        logged["loss/var"], logged["loss/cov"] = var_loss, cov_loss

        if cfg.temporal_var_weight > 0:
            within = z_all - z_all.mean(dim=1, keepdim=True)                 # deviations along each sequence
            std_t = (within.pow(2).sum(dim=(0, 1)) / max(b * (t1 - 1), 1) + 1e-4).sqrt()
            temporal_var = F.relu(cfg.temporal_var_target - std_t).mean()
            total = total + cfg.temporal_var_weight * temporal_var
            logged["loss/temporal_var"] = temporal_var
        if cfg.smooth_weight > 0:
            smooth = (z_all[:, 1:] - z_all[:, :-1]).pow(2).sum(-1).mean()
            total = total + cfg.smooth_weight * smooth
            logged["loss/smooth"] = smooth
        if self.idm_head is not None:
            a_hat = self.idm_head(torch.cat([z_all[:, :-1], z_all[:, 1:]], dim=-1))
            idm = F.mse_loss(a_hat, actions)
            total = total + cfg.idm_weight * idm
            logged["loss/idm"] = idm

        readout_loss = obs.new_zeros(())
        if measurements:
            heads_in = self.readout(z_all.detach())            # probes: no gradient into the encoder
            # how well measurements survive imagination; with readout_on_predicted the probes also learn
            # to read the predictor's latents (what guardrails check), still without touching the model
            with torch.set_grad_enabled(cfg.readout_on_predicted and torch.is_grad_enabled()):
                heads_pred = self.readout(z_hat.detach())
            for name, m in measurements.items():
                if name not in heads_in:
                    continue
                m = m.to(dev, torch.float32)
                if m.shape[:2] != (b, t1) or m.shape[-1] != heads_in[name].shape[-1]:
                    raise ValueError(f"measurements[{name!r}] has shape {tuple(m.shape)}, expected "
                                     f"[{b}, {t1}, {heads_in[name].shape[-1]}]")
                term = F.mse_loss(heads_in[name], m)
                term_pred = F.mse_loss(heads_pred[name], m[:, 1:])
                readout_loss = readout_loss + term + (term_pred if cfg.readout_on_predicted else 0.0)
                logged[f"readout/{name}"] = term.detach()
                logged[f"readout/{name}_pred"] = term_pred.detach()
                # scale-free: 0 = the latent keeps the measurement exactly, ~1 = it keeps nothing of it
                with torch.no_grad():
                    per_dim = (heads_in[name] - m).pow(2).reshape(-1, m.shape[-1]).mean(0)
                    logged[f"readout/{name}_rel"] = (per_dim / m.reshape(-1, m.shape[-1]).var(0).clamp_min(1e-6)).mean()
        total = total + cfg.readout_weight * readout_loss
        logged["loss/readout"] = readout_loss
        if measurements and cfg.readout_grounding:
            grounding = self._grounding_loss(z_all, z_hat, measurements)
            total = total + cfg.grounding_weight * grounding
            logged["loss/grounding"] = grounding
        if self.value is not None and goals is not None:
            with torch.no_grad():
                z_v, z_next_v, z_goal_v = (self.encode(goals[k].to(dev, torch.float32))
                                           for k in ("obs", "next_obs", "goal_obs"))
            value_loss, value_logs = self.value.loss(z_v, z_next_v, z_goal_v, goals["reached"].to(dev, torch.bool))
            total = total + value_loss
            logged.update(value_logs)
        if self.task is not None and rewards is not None:
            if rewards.shape != (b, horizon) or terminals is None or terminals.shape != (b, horizon):
                raise ValueError(f"rewards and terminals must be [{b}, {horizon}], got "
                                 f"{None if rewards is None else tuple(rewards.shape)} and "
                                 f"{None if terminals is None else tuple(terminals.shape)}")
            reward_loss, critic_loss, task_logs = self.task.loss(
                z_all, z_hat, actions, rewards.to(dev, torch.float32), terminals.to(dev, torch.bool))
            self._policy_latents = torch.cat([z_all[:, :1], z_hat[:, :-1]], dim=1).detach()
            total = total + cfg.reward_weight * reward_loss + cfg.critic_weight * critic_loss
            logged.update(task_logs)
        if self.coarse is not None and coarse_obs is not None:
            o_t, o_k, o_j = sample_coarse_windows(coarse_obs.to(dev, torch.float32), cfg.coarse_k)
            with torch.no_grad():
                z_t, g, z_k = self.encode(o_t), self.encode(o_j), self.encode_target(o_k)
            coarse_loss, coarse_logs = self.coarse.loss(z_t, z_k, g)
            total = total + coarse_loss
            logged.update(coarse_logs)
        logged["loss/total"] = total

        names = list(logged)
        values = torch.stack([v.detach().float() for v in logged.values()]).tolist()  # one device sync
        logs = dict(zip(names, values, strict=True))
        if diagnostics:
            logs.update(collapse_diagnostics(flat))
        return total, logs

    def _grounding_loss(self, z_all: Tensor, z_hat: Tensor, measurements: dict[str, Tensor]) -> Tensor:
        """Readout error of the grounded measurements on encoded and predicted latents, WITH gradient
        into the model, each relative to the measurement's variance over the batch (scale-free)."""
        loss = z_all.new_zeros(())
        for name in self.cfg.readout_grounding:
            if name not in measurements:
                raise ValueError(f"readout_grounding needs measurement {name!r}, which the batch lacks")
            m = measurements[name].to(z_all.device, torch.float32)
            scale = m.reshape(-1, m.shape[-1]).var(0).sum().clamp_min(1e-6)
            head = self.readout_heads[name]
            encoded = (head(z_all) - m).pow(2).sum(-1).mean()
            predicted = (head(z_hat) - m[:, 1:]).pow(2).sum(-1).mean()
            loss = loss + (encoded + predicted) / scale
        return loss

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def make_optimizer(self) -> torch.optim.Optimizer:
        # fused Adam (one kernel for all parameters) saves about 8% of a small model's update on a CPU
        fused = True if self.device.type in ("cpu", "cuda") else None
        return torch.optim.Adam(self.trainable_parameters(), lr=self.cfg.lr, fused=fused)

    def train_step(self, optimizer: torch.optim.Optimizer, obs: Tensor, actions: Tensor,
                   measurements: dict[str, Tensor] | None = None, diagnostics: bool = True,
                   goals: dict[str, Tensor] | None = None, rewards: Tensor | None = None,
                   terminals: Tensor | None = None, coarse_obs: Tensor | None = None) -> dict[str, float]:
        """One gradient step (loss, clip to ``grad_clip``, step) followed by one EMA target update.

        The input normaliser is NOT updated here: call ``update_normalizer`` on new experience.
        """
        self.train()
        precision = torch.bfloat16 if self.cfg.train_precision == "bfloat16" else None
        with torch.autocast(self.device.type, dtype=precision or torch.float32, enabled=precision is not None):
            loss, logs = self.loss(obs, actions, measurements, diagnostics, goals, rewards, terminals, coarse_obs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.task is not None and rewards is not None:
            self._policy_gradient(logs)

        if self.cfg.grad_clip > 0:
            # Probes are clipped on their own: a shared norm would let their gradient rescale the encoder's step.
            model_params = [*self.encoder.parameters(), *self.predictor.parameters()]
            if self.idm_head is not None:
                model_params += list(self.idm_head.parameters())
            logs["grad_norm"] = float(nn.utils.clip_grad_norm_(model_params, self.cfg.grad_clip))
            if len(self.readout_heads):
                nn.utils.clip_grad_norm_(self.readout_heads.parameters(), self.cfg.grad_clip)
            if self.value is not None:
                nn.utils.clip_grad_norm_(self.value.net.parameters(), self.cfg.grad_clip)
            if self.coarse is not None:
                nn.utils.clip_grad_norm_(self.coarse.parameters(), self.cfg.grad_clip)
            if self.task is not None:
                # the policy's gradient was clipped on its own in _policy_gradient
                nn.utils.clip_grad_norm_([*self.task.reward_net.parameters(), *self.task.critic.parameters()],
                                         self.cfg.grad_clip)
        optimizer.step()
        self.update_target()
        if self.value is not None:
            self.value.update_target()
        if self.task is not None:
            self.task.update_target()
        return logs

    def _policy_gradient(self, logs: dict[str, float]) -> None:
        """Set the policy's gradients (only its own) to ascend the critic at the policy's actions, on
        the latents the critic just trained on (the critic's heads are not moved by this loss)."""
        params = list(self.policy.parameters())
        policy_loss, value = self.task.policy_loss(self._policy_latents)
        for p, g in zip(params, torch.autograd.grad(policy_loss, params), strict=True):
            p.grad = g
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        logs["loss/policy"], logs["policy/value"] = float(policy_loss.detach()), float(value)

    @torch.no_grad()
    def update_target(self) -> None:
        """One EMA step: target <- tau * target + (1 - tau) * online; normaliser buffers copied."""
        weight = 1.0 - self.cfg.ema_tau
        for p_t, p_o in zip(self.target_encoder.parameters(), self.encoder.parameters(), strict=True):
            p_t.lerp_(p_o, weight)
        for b_t, b_o in zip(self.target_encoder.buffers(), self.encoder.buffers(), strict=True):
            b_t.copy_(b_o)

    @torch.no_grad()
    def update_normalizer(self, obs: Tensor) -> None:
        """Merge obs [..., obs_dim] into the running input statistics of the online and target encoders."""
        self.encoder.update_normalizer(obs)
        for b_t, b_o in zip(self.target_encoder.buffers(), self.encoder.buffers(), strict=True):
            b_t.copy_(b_o)
