"""Configuration of the latent JEPA world model (a plain dataclass: serialisable, no eval, no pickle)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# what the critic's TD target bootstraps on (world_models.task.TaskHeads)
CRITIC_BOOTSTRAPS = ("policy", "behaviour")
# how the TD target combines the two target heads it draws (world_models.task.TaskHeads)
CRITIC_TARGETS = ("min", "mean")


@dataclass
class WorldModelConfig:
    obs_dim: int = 0            # filled from the env by the trainer
    action_dim: int = 0
    latent_dim: int = 64
    hidden_dim: int = 256
    encoder_layers: int = 2     # hidden layers of the encoder MLP
    predictor_layers: int = 2   # hidden layers of the predictor MLP
    predictor_hidden: int = 0   # hidden width of the predictor MLP; 0 = hidden_dim
    train_horizon: int = 5      # multi-step latent rollout length in the loss
    rho: float = 0.9            # per-step weight rho**t of the rollout loss
    ema_tau: float = 0.99       # target <- tau * target + (1 - tau) * online
    var_weight: float = 1.0     # VICReg-style variance term
    cov_weight: float = 0.04    # covariance term
    readout_weight: float = 1.0
    measurement_dims: dict[str, int] = field(default_factory=dict)  # readout heads
    lr: float = 3e-4
    grad_clip: float = 10.0
    # --- additions beyond the shared brief (all have defaults) ---
    encoder: str = "mlp"        # name in world_models.encoders.ENCODERS
    # Pixels (world_models.pixel_encoder, encoder "conv"): the frame shape [H, W, 3] or the stack
    # [K, H, W, 3], filled from the env by the trainer; random-shift augmentation while training
    # (pixels, 0 = off) and the conv width.
    obs_shape: list[int] = field(default_factory=list)
    image_shift: int = 4
    conv_channels: int = 32
    # conv encoder, per pixel and channel: subtract the running mean of the frames seen, divide by
    # their std (clamped and clipped like state inputs), so what moves in a still scene dominates
    # the input. The trainer turns it on for pixel observations; False here so that checkpoints
    # written before it existed load as they were trained.
    image_normalize: bool = False
    # A pretrained image backbone on disk, frozen (world_models.pretrained_encoder, encoder
    # "pretrained"): its Hugging Face folder, the input size (0 = the backbone's own) and the
    # SHA-256 of its weights (filled when first built; a checkpoint refuses other weights).
    pretrained_path: str = ""
    pretrained_image_size: int = 0
    pretrained_sha256: str = ""
    one_step_weight: float = 0.0  # optional extra term: predict(online z_t, a_t) vs target z_{t+1} at every t
    # Metric shaping (PLDM-style): the planner ranks plans by L2 distance to the goal latent, so
    # that distance should grow with the number of steps between states. ``smooth_weight`` pulls
    # consecutive encodings together (mean ||z_{t+1} - z_t||^2), which with the variance term spreads
    # the latent evenly along trajectories; ``idm_weight`` trains an inverse-dynamics head
    # a_t <- (z_t, z_{t+1}) whose gradient reaches the encoder, so controllable state is not dropped.
    # Reward tasks never plan by latent distance, and there smoothness strips fast-changing state
    # from the latent (finger-spin's spinner): the finger-spin, walker-walk and cheetah-run launch
    # files set it to 0 (BENCHMARKS.md).
    smooth_weight: float = 1.0
    idm_weight: float = 1.0
    # Temporal variance: the variance hinge above is over the batch, which features that are constant
    # within an episode (e.g. a target position in the observation) satisfy for free, and smoothness
    # then favours them over the state the agent controls. This hinge asks each latent dimension to
    # vary *along* trajectories too (std of z_t around its sequence mean, pooled over the batch).
    temporal_var_weight: float = 0.0
    temporal_var_target: float = 0.1
    # Learned cost-to-go (world_models.value.GoalValue): steps between latent states, trained by
    # expectile TD on hindsight goals from the replay. 0 hidden units = no value head.
    value_hidden: int = 0
    value_gamma: float = 0.98
    value_expectile: float = 0.9
    value_tau: float = 0.005
    value_p_current: float = 0.1  # goal = the state itself (the TD anchor: 0 steps)
    value_p_future: float = 0.6   # goal = a later state of the same episode (uniform); else any stored state
    # Reward tasks (world_models.task.TaskHeads): a reward head r(z_{t+1}, a_t) whose loss also
    # shapes the latent (weight ``reward_weight``), a critic ensemble Q(z, a) trained by TD on
    # detached latents, and the mode-1 policy that ascends it (``policy_hidden`` units; 0 = as many
    # as ``reward_hidden``). 0 reward units = none of them (goal tasks need no reward).
    reward_hidden: int = 0
    reward_weight: float = 1.0
    critics: int = 5
    critic_weight: float = 1.0
    gamma: float = 0.99
    critic_tau: float = 0.01
    # the critic's TD error also trains the encoder and predictor (TD-MPC2 does so); else it reads
    # detached latents and only the reward head shapes them
    critic_shapes_latent: bool = False
    # What the TD target bootstraps on: "policy" Q(z', pi(z')) (TD-MPC2's; the value of following the
    # mode-1 policy, which a replanning planner never does), or "behaviour" Q(z', a') at the action the
    # replay holds next (SARSA: the value of acting as the data's planner did; no target ever queries an
    # action the data lacks). "behaviour" needs train_horizon >= 2: the window's last step has no a'.
    critic_bootstrap: str = "policy"
    # How the TD target combines the two target heads drawn at random from the ensemble: "min" (TD3's
    # clipped double Q, TD-MPC2's) or "mean". The mean lets the critic climb to the returns' ceiling
    # (max reward / (1 - gamma)) and rank nothing: cartpole-swingup 766.4 on three seeds against 835.6
    # with the minimum (BENCHMARKS.md).
    critic_target: str = "min"
    policy_hidden: int = 0
    # Hierarchical planning (world_models.coarse.CoarseModel): a coarse model of ``coarse_k`` steps
    # at once, conditioned on a subgoal latent, trained on detached latents. 0 = none.
    coarse_k: int = 0
    # "bfloat16" runs the training forward/backward under autocast (parameters and optimiser stay
    # float32): about 2x faster updates for hidden widths >= 384 on CPUs with AMX / AVX512-BF16.
    train_precision: str = "float32"
    # Per-dim std (over the batch) that the variance hinge asks for. Latents are LayerNorm-ed
    # (zero mean, unit second moment over dims), so the mean per-dim batch std is at most 1:
    # a hinge at 1 could never be satisfied; 0.5 asks for a spread that is reachable.
    var_target: float = 0.5
    readout_hidden: int = 64    # hidden width of each readout probe
    # Train the probes on the predictor's latents too (detached: the world model is untouched), so
    # that guardrails reading predicted trajectories see smaller errors than probes fit on real latents.
    readout_on_predicted: bool = True
    # Grounding: the readouts NAMED here also send their gradient into the encoder and predictor,
    # with an error relative to the measurement's batch variance (scale-free) times
    # ``grounding_weight``. For guardrails that read a quantity the JEPA objective alone encodes
    # poorly (e.g. an end-effector speed), so predicted trajectories carry it. Default: pure probes.
    readout_grounding: list[str] = field(default_factory=list)
    grounding_weight: float = 1.0
    # State encoder only: a weight per observation feature, applied after the normaliser (empty = all 1;
    # 0 = the feature is unseen). The latent's distances start from the normalised observation's geometry
    # (Push: a 0.2 rad turn of the block is 5.9 times a 2 cm move at the input, 4.4-5.6 times in the
    # latent); weighting the block's position 3x moved the latent's ratio to 4.0, 10x to 1.2, and
    # a Push agent trained at 10x succeeded less, 27/50 against 33/50 (BENCHMARKS.md).
    input_weights: list[float] = field(default_factory=list)
    norm_min_std: float = 1e-2  # input normaliser: std clamp (constant inputs never divide by ~0)
    norm_clip: float = 10.0     # input normaliser: normalised inputs are clipped to +-norm_clip
    seed: int | None = None     # when set, parameter init uses this seed (global RNG left untouched)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field; the trainer fills obs/action dims first."""
        positive = ("obs_dim", "action_dim", "latent_dim", "hidden_dim", "encoder_layers", "predictor_layers",
                    "train_horizon", "readout_hidden", "critics", "conv_channels")
        # 0 = no such head (predictor_hidden: hidden_dim)
        for name in ("value_hidden", "reward_hidden", "policy_hidden", "coarse_k", "predictor_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"WorldModelConfig.{name} must be an int >= 0, got {value!r}")
        if self.policy_hidden > 0 and self.reward_hidden == 0:
            raise ValueError("WorldModelConfig.policy_hidden > 0 needs reward_hidden > 0: the policy ascends the "
                             "reward task's critic")
        if not 0.0 < self.gamma < 1.0 or not 0.0 < self.critic_tau <= 1.0:
            raise ValueError(f"WorldModelConfig.gamma must be in (0, 1) and critic_tau in (0, 1], "
                             f"got {self.gamma}, {self.critic_tau}")
        p_current, p_future = self.value_p_current, self.value_p_future
        if not (p_current >= 0 and p_future >= 0 and p_current + p_future <= 1):
            raise ValueError(f"WorldModelConfig.value_p_current + value_p_future must be probabilities summing to "
                             f"<= 1, got {self.value_p_current}, {self.value_p_future}")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"WorldModelConfig.{name} must be a positive int, got {value!r}")
        if self.critic_bootstrap not in CRITIC_BOOTSTRAPS:
            raise ValueError(f"WorldModelConfig.critic_bootstrap must be one of {CRITIC_BOOTSTRAPS}, "
                             f"got {self.critic_bootstrap!r}")
        if self.critic_target not in CRITIC_TARGETS:
            raise ValueError(f"WorldModelConfig.critic_target must be one of {CRITIC_TARGETS}, "
                             f"got {self.critic_target!r}")
        if self.critic_bootstrap == "behaviour" and self.reward_hidden > 0 and self.train_horizon < 2:
            raise ValueError("WorldModelConfig.critic_bootstrap='behaviour' needs train_horizon >= 2 (the "
                             "bootstrap reads the next stored action)")
        if not 0.0 <= self.ema_tau <= 1.0:
            raise ValueError(f"WorldModelConfig.ema_tau must be in [0, 1], got {self.ema_tau}")
        if not 0.0 < self.rho <= 1.0:
            raise ValueError(f"WorldModelConfig.rho must be in (0, 1], got {self.rho}")
        for name in ("var_weight", "cov_weight", "readout_weight", "one_step_weight", "smooth_weight", "idm_weight",
                     "temporal_var_weight", "temporal_var_target", "var_target", "lr", "grounding_weight",
                     "reward_weight", "critic_weight",
                     "grad_clip", "norm_min_std", "norm_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"WorldModelConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.train_precision not in ("float32", "bfloat16"):
            raise ValueError(f"WorldModelConfig.train_precision must be 'float32' or 'bfloat16', "
                             f"got {self.train_precision!r}")
        if not isinstance(self.readout_grounding, list) or not all(isinstance(k, str) for k in self.readout_grounding):
            raise ValueError(f"WorldModelConfig.readout_grounding must be a list of measurement names, "
                             f"got {self.readout_grounding!r}")
        unknown = sorted(set(self.readout_grounding) - set(self.measurement_dims))
        if unknown:
            raise ValueError(f"WorldModelConfig.readout_grounding names {unknown}, which have no readout head; "
                             f"measurements: {sorted(self.measurement_dims)}")
        if self.encoder == "conv" and len(self.obs_shape) not in (3, 4):
            raise ValueError(f"WorldModelConfig.obs_shape must be [H, W, 3] or [K, H, W, 3] for the conv encoder, "
                             f"got {self.obs_shape}")
        if self.encoder == "pretrained" and (not self.pretrained_path or len(self.obs_shape) not in (3, 4)):
            raise ValueError(f"WorldModelConfig: the pretrained encoder needs pixel observations and a "
                             f"pretrained_path (got obs_shape {self.obs_shape}, pretrained_path "
                             f"{self.pretrained_path!r})")
        if not isinstance(self.pretrained_image_size, int) or self.pretrained_image_size < 0:
            raise ValueError(f"WorldModelConfig.pretrained_image_size must be an int >= 0, got "
                             f"{self.pretrained_image_size!r}")
        if not isinstance(self.image_shift, int) or self.image_shift < 0:
            raise ValueError(f"WorldModelConfig.image_shift must be an int >= 0, got {self.image_shift!r}")
        if self.input_weights:
            weights = self.input_weights
            if self.encoder != "mlp" or not isinstance(weights, list) or len(weights) != self.obs_dim:
                raise ValueError(f"WorldModelConfig.input_weights must be one weight per observation feature "
                                 f"({self.obs_dim}) of the state encoder 'mlp' (encoder {self.encoder!r}), "
                                 f"got {weights!r}")
            if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < float("inf")
                       for w in weights):
                raise ValueError(f"WorldModelConfig.input_weights must be finite numbers >= 0, got {weights!r}")
        for key, dim in self.measurement_dims.items():
            if not isinstance(dim, int) or dim <= 0:
                raise ValueError(f"WorldModelConfig.measurement_dims[{key!r}] must be a positive int, got {dim!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        """Inverse of ``to_dict``; unknown keys are an error (a typo must not silently use a default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown WorldModelConfig keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        for name in ("readout_grounding", "input_weights"):
            if name in values:
                values[name] = list(values[name])
        if "measurement_dims" in values:
            values["measurement_dims"] = {str(k): int(v) for k, v in values["measurement_dims"].items()}
        return cls(**values)
