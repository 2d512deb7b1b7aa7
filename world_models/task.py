"""Reward tasks: a task-reward head, a critic and the mode-1 policy on the JEPA latent (issue 4).

The planner's cost for a task that comes with a reward is the predicted return, negated:
``-(sum_t gamma^t r(z_{t+1}, a_t) + gamma^H V(z_H))``, where ``r`` is the reward head (read from
the predicted latent after each action, and the action) and ``V(z) = Q(z, pi(z))`` the critic's
value of a latent state under the policy, which lets a short plan aim beyond its horizon.

The critic is an ensemble of action-value MLPs ``Q(z, a)``, trained by one-step temporal
differences on replay windows: ``Q(z_t, a_t) -> r_t + gamma * min_2 Q_target(z_{t+1}, pi(z_{t+1}) + eps)``
(the minimum over two heads drawn at random from the slowly updated target ensemble, at the
policy's action plus clipped noise, both against overestimation; the target is clamped to the
returns that the rewards seen so far allow), with no bootstrapping past a terminal state (a
time-limit truncation is not one).
Because the bootstrap follows the policy and the policy ascends Q, the critic estimates the
value of acting well from a state, not that of the old data's behaviour: a planner that only
ever spun the cartpole's pole still learns that slowing it at the top is worth more.
With ``bootstrap="behaviour"`` the target is instead ``r_t + gamma * min_2 Q_target(z_{t+1}, a_{t+1})``
at the action the replay holds next (SARSA): the value of acting as the data's planner did. No
target then queries an action the data lacks, and the planner, which scores its last latent with
the critic and then replans rather than follows the policy, is not told that the policy would
rescue a state it will not rescue (the cheetah-run failure in BENCHMARKS.md).

The mode-1 actor (``Policy``) maps a latent to an action in one network call and is trained to
maximise ``Q(z, pi(z))`` (mean over the ensemble) on replay latents; only its own parameters
move. The planner uses its imagined rollouts to propose candidate sequences and a first warm
start; ``oda eval --mode reactive`` acts with it alone.

Rewards and values regress in symlog space (``sign(x) log(1 + |x|)``), so one setting serves
rewards of any scale (dm_control's [0, 1], Gymnasium's locomotion rewards).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from world_models.config import CRITIC_BOOTSTRAPS, CRITIC_TARGETS
from world_models.encoders import mlp

# TD3's target-policy smoothing: Gaussian noise of this std, clipped, on the bootstrap's action
TARGET_NOISE, TARGET_NOISE_CLIP = 0.2, 0.5


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class Policy(nn.Module):
    """The mode-1 actor: a latent [..., D] -> an action [..., A] in [-1, 1] (tanh)."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int):
        super().__init__()
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


class TaskHeads(nn.Module):
    """Reward head ``r(z_next, a)``, critic ensemble ``Q(z, a)`` with an EMA target copy, and the
    policy ``pi(z)`` whose actions the critic's values and bootstraps follow."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int, critics: int = 5,
                 gamma: float = 0.99, tau: float = 0.01, policy_hidden: int | None = None,
                 shape_latent: bool = False, bootstrap: str = "policy", target: str = "min"):
        super().__init__()
        if bootstrap not in CRITIC_BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {CRITIC_BOOTSTRAPS}, got {bootstrap!r}")
        if target not in CRITIC_TARGETS:
            raise ValueError(f"target must be one of {CRITIC_TARGETS}, got {target!r}")
        if critics < 1:
            raise ValueError(f"critics must be >= 1, got {critics}")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        self.gamma, self.tau, self.shape_latent, self.bootstrap = gamma, tau, shape_latent, bootstrap
        self.target = target
        self.reward_net = mlp(latent_dim + action_dim, hidden_dim, 1, 1)
        self.critic = nn.ModuleList(mlp(latent_dim + action_dim, hidden_dim, 1, 1) for _ in range(critics))
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.policy = Policy(latent_dim, action_dim, policy_hidden or hidden_dim)
        # the smallest and largest reward trained on: they bound every return (see `loss`)
        self.register_buffer("reward_low", torch.tensor(0.0))
        self.register_buffer("reward_high", torch.tensor(0.0))

    def reward(self, z_next: Tensor, actions: Tensor) -> Tensor:
        """Predicted reward of taking ``actions`` [..., A] that led to ``z_next`` [..., D] -> [...]."""
        return symexp(self.reward_net(torch.cat([z_next, actions], dim=-1))[..., 0])

    def discounted_reward(self, z_next: Tensor, actions: Tensor) -> Tensor:
        """Predicted rewards of a trajectory discounted from its first step: z_next [N, H, D] (the latents that
        actions [N, H, A] led to) -> sum_h gamma^h r_h [N]."""
        discount = self.gamma ** torch.arange(z_next.shape[1], device=z_next.device, dtype=z_next.dtype)
        return (self.reward(z_next, actions) * discount).sum(-1)

    def _q(self, z: Tensor, actions: Tensor, target: bool = False) -> Tensor:
        heads = self.target_critic if target else self.critic
        za = torch.cat([z, actions], dim=-1)
        return torch.stack([head(za)[..., 0] for head in heads])  # [K, ...] in symlog space

    def q(self, z: Tensor, actions: Tensor) -> Tensor:
        """Discounted return expected after taking ``actions`` [..., A] in latents z [..., D] -> [...]."""
        return symexp(self._q(z, actions)).mean(0)

    def value(self, z: Tensor) -> Tensor:
        """Discounted return expected from latents z [..., D] acting with the policy -> [...]."""
        return self.q(z, self.policy(z))

    def tail_value(self, z: Tensor, step: Callable[[Tensor, Tensor], Tensor], steps: int, trust: float) -> Tensor:
        """The critic's value of z [N, D], moved toward the model's own imagination by at most ``trust``:
        the policy rolled ``steps`` steps through the one-step model ``step``, the reward head's discounted
        rewards on the way and the critic's value where it ends. The model can know better than the critic
        (cartpole: it ranks the balanced cart at the centre above the parked one, where the critic ranks
        it below); it can also be exploited where it is optimistic (from a hanging pole, a plan that
        dithers and leaves the swing-up to the imagined policy): the bound caps how far an optimistic
        imagination can lift any plan above the critic's value. ``trust`` 0: the critic's value."""
        value = self.value(z)
        if trust == 0:  # nothing to move: skip the K-step imagination (it runs for every sample of every plan)
            return value
        latents, actions = self.policy.imagine(z, step, steps)
        imagined = self.discounted_reward(latents, actions) + self.gamma ** steps * self.value(latents[:, -1])
        return value + (imagined - value).clamp(-trust, trust)

    def _bootstrap(self, z: Tensor, next_actions: Tensor | None = None) -> Tensor:
        """The TD target's value of z: the minimum (``target="mean"``: the mean) of two random target heads
        at the policy's action, smoothed by clipped noise (TD3) so that a narrow peak of Q under the policy
        is not chased; or, given ``next_actions`` (the behaviour bootstrap), at those stored actions."""
        if next_actions is None:
            action = self.policy(z)
            noise = (TARGET_NOISE * torch.randn_like(action)).clamp(-TARGET_NOISE_CLIP, TARGET_NOISE_CLIP)
            next_actions = (action + noise).clamp(-1.0, 1.0)
        values = self._q(z, next_actions, target=True)
        if values.shape[0] > 2:
            values = values[torch.randperm(values.shape[0], device=z.device)[:2]]
        return symexp(values.min(0).values if self.target == "min" else values.mean(0))

    def loss(self, z: Tensor, z_pred: Tensor, actions: Tensor, rewards: Tensor, terminals: Tensor
             ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(reward loss, critic loss, logs) on one batch of windows.

        z [B, T+1, D]: encoded latents (the reward loss reaches the encoder through them; the
        critic reads them detached unless ``shape_latent``); z_pred [B, T, D]: the predictor's latents from z[:, 0];
        actions [B, T, A]; rewards [B, T]; terminals [B, T] bool.
        """
        target_r = symlog(rewards)
        reward_loss = 0.5 * ((self.reward_net(torch.cat([z[:, 1:], actions], -1))[..., 0] - target_r).pow(2).mean()
                             + (self.reward_net(torch.cat([z_pred, actions], -1))[..., 0] - target_r).pow(2).mean())
        # the behaviour bootstrap (SARSA) reads the next stored action, which the window's last step lacks:
        # that step trains the critic only where it is terminal (its target bootstraps on nothing)
        next_actions, weight = None, None
        if self.bootstrap == "behaviour":
            next_actions = torch.cat([actions[:, 1:], actions[:, -1:]], dim=1)  # the last one: a placeholder
            weight = torch.ones_like(rewards)
            weight[:, -1] = terminals[:, -1].float()
        with torch.no_grad():
            self.reward_low.copy_(torch.minimum(self.reward_low, rewards.min()))
            self.reward_high.copy_(torch.maximum(self.reward_high, rewards.max()))
            alive = 1.0 - terminals.float()
            targets = rewards + self.gamma * alive * self._bootstrap(z[:, 1:].detach(), next_actions)  # [B, T]
            # no return can leave [min(r) / (1 - gamma), max(r) / (1 - gamma)] (0 included: an episode
            # may end): clamping there stops an overestimate from feeding on itself without bound
            targets = targets.clamp(self.reward_low / (1 - self.gamma), self.reward_high / (1 - self.gamma))
        # the critic learns on the latents the planner scores it on: encoded first, then predicted;
        # with shape_latent its error also trains the encoder and predictor (as TD-MPC2's does)
        inputs = torch.cat([z[:, :1], z_pred[:, :-1]], dim=1)
        inputs = inputs if self.shape_latent else inputs.detach()
        values = self._q(inputs, actions)  # [K, B, T], symlog space
        if weight is None:
            weight = torch.ones_like(rewards)
        errors = (values - symlog(targets)).pow(2)
        critic_loss = (errors * weight).sum() / (weight.sum() * len(values))
        logs = {"loss/reward": reward_loss.detach(), "loss/critic": critic_loss.detach(),
                "critic/value_mean": symexp(values).mean().detach(),
                "critic/target_mean": (targets * weight).sum() / weight.sum()}  # placeholder targets left out
        return reward_loss, critic_loss, logs

    def policy_loss(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(-Q(z, pi(z)) normalised by its own size, the mean value) on detached latents z [..., D]."""
        value = self.value(z.detach())
        return -value.mean() / value.detach().abs().mean().clamp_min(1.0), value.mean().detach()

    @torch.no_grad()
    def update_target(self) -> None:
        for p_t, p_o in zip(self.target_critic.parameters(), self.critic.parameters(), strict=True):
            p_t.lerp_(p_o, self.tau)
