"""Reward tasks: a task-reward head and a critic on the JEPA latent (issue 4).

The planner's cost for a task that comes with a reward is the predicted return, negated:
``-(sum_t gamma^t r(z_{t+1}, a_t) + gamma^H V(z_H))``, where ``r`` is the reward head (read from
the predicted latent after each action, and the action) and ``V`` the critic, the discounted
return expected from a latent state, which lets a short plan aim beyond its horizon.

Both regress in symlog space (``sign(x) log(1 + |x|)``), so one setting serves rewards of any
scale (dm_control's [0, 1], Gymnasium's locomotion rewards). The critic is an ensemble of small
MLPs trained by temporal differences on replay windows: each state's target is the discounted
reward to the end of its window plus the slowly updated target critic's value there, with no
bootstrapping past a terminal state (a time-limit truncation is not one). Its value is that of
the policy that collected the data, i.e. the planner itself, which is what the planner needs at
the end of its horizon.

The mode-1 actor (``Policy``) maps a latent to an action in one network call. It learns to
maximise the same predicted return through the world model: from replay latents it imagines
``horizon`` steps under its own actions and ascends rewards plus the critic's value at the end
(the world model, reward head and critic are not changed by this loss). The planner uses it to
propose candidate sequences and a first warm start; ``oda eval --mode reactive`` acts with it alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from world_models.encoders import mlp


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TaskHeads(nn.Module):
    """Reward head ``r(z_next, a)`` and critic ensemble ``V(z)`` with an EMA target copy."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int, critics: int = 2,
                 gamma: float = 0.99, tau: float = 0.01):
        super().__init__()
        if critics < 1:
            raise ValueError(f"critics must be >= 1, got {critics}")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        self.gamma, self.tau = gamma, tau
        self.reward_net = mlp(latent_dim + action_dim, hidden_dim, 1, 1)
        self.critic = nn.ModuleList(mlp(latent_dim, hidden_dim, 1, 1) for _ in range(critics))
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def reward(self, z_next: Tensor, actions: Tensor) -> Tensor:
        """Predicted reward of taking ``actions`` [..., A] that led to ``z_next`` [..., D] -> [...]."""
        return symexp(self.reward_net(torch.cat([z_next, actions], dim=-1))[..., 0])

    def _values(self, z: Tensor, target: bool) -> Tensor:
        heads = self.target_critic if target else self.critic
        return torch.stack([head(z)[..., 0] for head in heads])  # [K, ...] in symlog space

    def value(self, z: Tensor, target: bool = False) -> Tensor:
        """Discounted return expected from latents z [..., D] -> [...] (ensemble mean)."""
        return symexp(self._values(z, target)).mean(0)

    def loss(self, z: Tensor, z_pred: Tensor, actions: Tensor, rewards: Tensor, terminals: Tensor
             ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(reward loss, critic loss, logs) on one batch of windows.

        z [B, T+1, D]: encoded latents (the reward loss reaches the encoder through them; the
        critic reads them detached); z_pred [B, T, D]: the predictor's latents from z[:, 0];
        actions [B, T, A]; rewards [B, T]; terminals [B, T] bool (only a window's last action
        can be terminal: windows never cross an episode's end).
        """
        target_r = symlog(rewards)
        reward_loss = 0.5 * ((self.reward_net(torch.cat([z[:, 1:], actions], -1))[..., 0] - target_r).pow(2).mean()
                             + (self.reward_net(torch.cat([z_pred, actions], -1))[..., 0] - target_r).pow(2).mean())
        steps = rewards.shape[1]
        with torch.no_grad():
            # return from each step to the window's end, then the target critic's value there
            alive = 1.0 - terminals[:, -1].float()
            bootstrap = alive * self.value(z[:, -1].detach(), target=True)
            targets = []
            running = bootstrap
            for t in reversed(range(steps)):
                running = rewards[:, t] + self.gamma * running
                targets.append(running)
            targets = torch.stack(targets[::-1], dim=1)  # [B, T]
        values = self._values(z[:, :-1].detach(), target=False)  # [K, B, T], symlog space
        critic_loss = (values - symlog(targets)).pow(2).mean()
        logs = {"loss/reward": reward_loss.detach(), "loss/critic": critic_loss.detach(),
                "critic/value_mean": symexp(values).mean().detach(), "critic/target_mean": targets.mean()}
        return reward_loss, critic_loss, logs

    @torch.no_grad()
    def update_target(self) -> None:
        for p_t, p_o in zip(self.target_critic.parameters(), self.critic.parameters(), strict=True):
            p_t.lerp_(p_o, self.tau)


class Policy(nn.Module):
    """The mode-1 actor: a latent [..., D] -> an action [..., A] in [-1, 1] (tanh)."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int, horizon: int = 3):
        super().__init__()
        if horizon < 1:
            raise ValueError(f"policy horizon must be >= 1, got {horizon}")
        self.horizon = horizon
        self.net = mlp(latent_dim, hidden_dim, action_dim, 2)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.net(z))

    def imagine(self, z0: Tensor, step: Callable[[Tensor, Tensor], Tensor], horizon: int,
                noise: float = 0.0, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Roll the policy through the one-step model ``step`` from z0 [N, D] for ``horizon`` steps:
        (latents z_1..z_H [N, H, D], actions [N, H, A]), actions perturbed by Gaussian ``noise``."""
        z, latents, actions = z0, [], []
        for _ in range(horizon):
            a = self(z)
            if noise > 0:
                a = (a + noise * torch.randn(a.shape, generator=generator, device=a.device)).clamp(-1.0, 1.0)
            z = step(z, a)
            latents.append(z)
            actions.append(a)
        return torch.stack(latents, 1), torch.stack(actions, 1)

    def loss(self, z0: Tensor, step: Callable[[Tensor, Tensor], Tensor], task: TaskHeads) -> tuple[Tensor, Tensor]:
        """(-predicted return normalised by its own size, the return) from detached start latents z0 [N, D]."""
        z, a = self.imagine(z0.detach(), step, self.horizon)
        discount = task.gamma ** torch.arange(self.horizon, device=z.device, dtype=z.dtype)
        ret = (task.reward(z, a) * discount).sum(-1) + task.gamma ** self.horizon * task.value(z[:, -1])
        return -ret.mean() / ret.detach().abs().mean().clamp_min(1.0), ret.mean().detach()
