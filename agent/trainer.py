"""Online training: the agent collects its own experience and learns its world model from it.

No reward is used: seed the replay with exploratory episodes (random actions of the kind
``training.random_actions`` names, see agent.exploration; or the task's goal-blind play policy
with ``training.seed_policy: play``), then act
with the planner toward each episode's goal plus exploration noise, updating the world model
at ``updates_per_step`` gradient steps per env step. Evaluation, TensorBoard scalars and
checkpoints happen at episode boundaries, so ``--resume`` continues exactly where a checkpoint
was written, with the replay intact.
"""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agent.actor import episode_goal
from agent.build import env_dims, landmarks_from_replay, make_actor, make_env, world_model_config
from agent.checkpoint import checkpoint_dir, latest_checkpoint
from agent.device import flush_denormals, resolve_device, seed_everything
from agent.evaluate import EVAL_SEED_BASE, evaluate
from agent.exploration import make_random_actions
from agent.launch import LaunchConfig, eval_overrides
from agent.memory import EpisodeReplay
from agent.snapshot import load_training_state, save_training_state
from world_models.jepa import JEPAWorldModel

DIAGNOSTICS_EVERY = 25  # updates between collapse diagnostics (an SVD per call)


class Trainer:
    def __init__(self, cfg: LaunchConfig, resume: bool = False, progress: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.run_dir = Path(cfg.run_dir)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        flush_denormals()
        self.env = make_env(cfg)
        self.eval_env = make_env(cfg)
        obs_shape, obs_dtype, self.action_dim, measurement_dims = env_dims(self.env)
        self.wm_cfg = world_model_config(cfg, obs_shape, self.action_dim, measurement_dims)
        self.model = JEPAWorldModel(self.wm_cfg).to(self.device)
        self.optim = self.model.make_optimizer()
        # The model the actor plans with: the trained one, or with `overlap_update` a copy that takes the
        # trained weights whenever no update is in flight (an update running beside the plan would tear them).
        self.acting_model = copy.deepcopy(self.model).eval() if cfg.training.overlap_update else self.model
        self.actor = make_actor(cfg, self.acting_model, self.action_dim, self.device, env=self.env)
        self._eval_actor = None  # built at the first evaluation when the launch file has `evaluation:`
        capacity = cfg.training.steps + 2 * self.env.unwrapped.episode_steps + 1
        self.replay = EpisodeReplay(capacity, obs_shape, obs_dtype, self.action_dim, measurement_dims)
        self.rng = np.random.default_rng(cfg.seed)
        # the updates' replay draws: their own stream when they run in a second thread, so that the acting
        # thread's draws (exploration noise) and theirs do not interleave by timing
        self.update_rng = np.random.default_rng([cfg.seed, 1]) if cfg.training.overlap_update else self.rng
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self.explore = make_random_actions(cfg.training.random_actions, self.action_dim, self.rng)
        self.step = 0
        self.episode = 0
        self.updates = 0
        self.history: list[dict[str, Any]] = []
        self._diagnostics: dict[str, float] = {}
        self.step_ms: list[tuple[float, float, float]] = []  # (plan, env, update) per planning step, this process
        if resume:
            ckpt = latest_checkpoint(self.run_dir)
            if ckpt is None:
                raise FileNotFoundError(f"--resume: no checkpoint under {self.run_dir}")
            load_training_state(self, ckpt)
            self._sync_acting_model()

    # -- one gradient step ------------------------------------------------------------------
    def update(self) -> dict[str, float]:
        batch = self.replay.sample(self.cfg.training.batch_size, self.wm_cfg.train_horizon, self.update_rng)
        tensor = lambda x: torch.as_tensor(x, dtype=torch.float32, device=self.device)  # noqa: E731
        measurements = {k: tensor(v) for k, v in batch.get("measurements", {}).items()}
        diagnose = self.updates % DIAGNOSTICS_EVERY == 0
        goals = None
        if self.model.value is not None:
            sampled = self.replay.sample_goals(self.cfg.training.batch_size, self.update_rng,
                                               self.wm_cfg.value_p_current, self.wm_cfg.value_p_future)
            goals = {k: torch.as_tensor(v, device=self.device) for k, v in sampled.items()}  # the loss casts
        extra = {}
        if self.model.task is not None:  # reward tasks: the reward head and critic learn from the rewards
            extra = {"rewards": tensor(batch["rewards"]),
                     "terminals": torch.as_tensor(batch["terminals"], device=self.device)}
        if self.model.coarse is not None:  # the coarse model learns from windows of 2k steps
            extra["coarse_obs"] = tensor(self.replay.sample(self.cfg.training.batch_size, 2 * self.wm_cfg.coarse_k,
                                                           self.update_rng)["obs"])
        metrics = self.model.train_step(self.optim, tensor(batch["obs"]), tensor(batch["actions"]), measurements,
                                        diagnostics=diagnose, goals=goals, **extra)
        if diagnose:
            self._diagnostics = {k: v for k, v in metrics.items() if k.startswith("latent/")}
        self.model.eval()
        self.updates += 1
        return {**self._diagnostics, **metrics}  # the latest collapse diagnostics ride along

    def _updates(self, count: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for _ in range(count):
            metrics = self.update()
        return metrics

    def _start_updates(self, count: int) -> dict[str, float]:
        """This step's updates: run now, or (``overlap_update``) started in the second thread after the
        previous step's have finished and reached the acting model; returns the latest finished metrics."""
        if not self.cfg.training.overlap_update:
            return self._updates(count)
        metrics = self._finish_updates()
        if count:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oda-update")
            self._pending = self._pool.submit(self._updates, count)
        return metrics

    def _finish_updates(self) -> dict[str, float]:
        """Wait for the updates in flight (their error is raised here) and give their weights to the actor."""
        metrics: dict[str, float] = {}
        if self._pending is not None:
            pending, self._pending = self._pending, None
            metrics = pending.result()
            self._sync_acting_model()
        return metrics

    @torch.no_grad()
    def _sync_acting_model(self) -> None:
        if self.acting_model is not self.model:
            for mine, trained in zip(self.acting_model.state_dict().values(), self.model.state_dict().values(),
                                     strict=True):
                mine.copy_(trained)

    # -- the loop -----------------------------------------------------------------------------
    def train(self) -> list[dict[str, Any]]:
        cfg, t = self.cfg, self.cfg.training
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "launch.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        writer = SummaryWriter(str(self.run_dir / "tb"))
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, desc=cfg.name, unit="step")
        next_eval = (self.step // t.eval_every + 1) * t.eval_every if t.eval_every else None
        next_ckpt = (self.step // t.checkpoint_every + 1) * t.checkpoint_every if t.checkpoint_every else None
        while self.step < t.steps:
            seeding = self.step < t.seed_steps
            ep = self._run_episode(seeding, writer)
            bar.update(ep["length"])
            bar.set_postfix(success=ep["success"], loss=ep.get("loss/pred", float("nan")))
            if seeding and self.step >= t.seed_steps:
                self._pretrain(writer)
            if next_eval is not None and (self.step >= next_eval or self.step >= t.steps):
                self._evaluate(writer)
                next_eval = (self.step // t.eval_every + 1) * t.eval_every
            if self.step >= t.steps or (next_ckpt is not None and self.step >= next_ckpt):
                save_training_state(self, checkpoint_dir(self.run_dir, self.step))  # always at the end
                if next_ckpt is not None:
                    next_ckpt = (self.step // t.checkpoint_every + 1) * t.checkpoint_every
        bar.close()
        writer.close()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        return self.history

    def _run_episode(self, seeding: bool, writer: SummaryWriter) -> dict[str, Any]:
        t = self.cfg.training
        # Training episodes are seeded below EVAL_SEED_BASE, evaluation episodes at or above it.
        obs, info = self.env.reset(seed=(self.cfg.seed * 100_003 + self.episode) % EVAL_SEED_BASE)
        self.explore.reset()
        frontiers = None  # an exploring episode: how many least-visited landmarks it has reached
        wander = heading = 0  # random steps left after reaching one (training.explore_steps); steps toward it
        if not seeding:
            self.actor.reset(episode_goal(self.env, self.actor))
            # a hierarchy routes over landmarks drawn from the replay (0 for a flat planner)
            landmarks = landmarks_from_replay(self.actor, self.replay, seed=self.episode)
            if landmarks and self.rng.random() < t.explore_frontier:  # explore: head for the least visited
                frontiers = 0
                self._head_for(obs, 0)
        observations, actions, rewards = [obs], [], []
        timed_from = len(self.step_ms)  # this episode's steps, for its time/* scalars
        measurements = {k: [v] for k, v in info.get("measurements", {}).items()}
        terminated = truncated = False
        total, touched, metrics = 0.0, False, {}
        while not (terminated or truncated):
            t0 = time.perf_counter()
            if seeding:
                action = self._seed_action(obs)
            else:
                if (not wander and frontiers is not None
                        and len(actions) % self.actor.planner.config.replan_every == 0
                        and self._frontier_done(obs, heading)):
                    frontiers, heading, wander = frontiers + 1, 0, t.explore_steps
                    self.explore.reset()  # from here: the random walk starts afresh
                    if not wander:
                        self._head_for(obs, frontiers)
                planned = not wander
                if wander:  # go, then explore: random steps from the frontier reached, then the next one
                    action, wander = self.explore(obs), wander - 1
                    if not wander:
                        self._head_for(obs, frontiers)
                else:
                    action, heading = self.actor.act(obs), heading + 1
                noise = t.exploration_noise * self.rng.standard_normal(self.action_dim)
                action = np.clip(action + noise, -1.0, 1.0).astype(np.float32)
                self.actor.executed(action if planned else None)  # what the residual memory learns from
            t1 = time.perf_counter()
            obs, reward, terminated, truncated, info = self.env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            for k, v in info.get("measurements", {}).items():
                measurements[k].append(v)
            total += float(reward)
            touched = touched or bool(info.get("success", False))
            self.step += 1
            if not seeding:
                start = time.perf_counter()
                due = self.replay.num_steps > 0 and self.step % t.update_every == 0
                finished = self._start_updates(t.updates_per_step if due else 0)
                metrics = finished or metrics
                self.step_ms.append((1e3 * (t1 - t0), 1e3 * (start - t1), 1e3 * (time.perf_counter() - start)))
            if self.step >= t.steps:
                break
        metrics = self._finish_updates() or metrics  # the replay changes next: no update may be reading it
        self.replay.add_episode(np.asarray(observations), np.asarray(actions, dtype=np.float32),
                                {k: np.asarray(v, dtype=np.float32) for k, v in measurements.items()},
                                rewards=np.asarray(rewards, dtype=np.float32), terminated=terminated)
        if seeding:
            self.model.update_normalizer(torch.as_tensor(np.asarray(observations), dtype=torch.float32,
                                                         device=self.device))
            self._sync_acting_model()
        self.episode += 1
        writer.add_scalar("train/episode_return", total, self.step)
        # as in evaluation (agent.evaluate): success is at the goal when the episode ends, touched at any step
        success = bool(info.get("success", False))
        writer.add_scalar("train/episode_success", float(success), self.step)
        writer.add_scalar("train/episode_touched", float(touched), self.step)
        if not seeding and self.actor.escape is not None:  # agent.escape: this episode's tumbles
            writer.add_scalar("train/episode_tumbles", self.actor.escape.tumbles, self.step)
        for k, v in metrics.items():
            writer.add_scalar(k, v, self.step)
        if len(self.step_ms) > timed_from:  # mean over this episode's steps: a slowdown shows when it starts
            for k, v in zip(("plan", "env", "update"), np.mean(self.step_ms[timed_from:], axis=0), strict=True):
                writer.add_scalar(f"time/{k}_ms_per_step", float(v), self.step)
        return {"length": len(actions), "success": success, "touched": touched, **metrics}

    def _seed_action(self, obs: Any) -> np.ndarray:
        if self.cfg.training.seed_policy == "random":
            return self.explore(obs)
        action = self.env.unwrapped.play_action(self.rng)  # every env is an OdaEnv (None: no play policy)
        if action is None:
            raise ValueError(f"training.seed_policy=play: {self.cfg.env.id} has no play policy "
                             "(a task defines one in play_action); use seed_policy=random")
        return action

    @torch.no_grad()
    def _latent(self, obs: Any) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(obs)[None], dtype=torch.float32, device=self.device)
        return self.acting_model.encode(obs)[0]

    def _head_for(self, obs: Any, skip: int) -> None:
        """An exploring episode's next landmark: the ``skip``-th least visited one the graph can route
        to from here, or (a share ``training.explore_bridge`` of the time) one it cannot, next to one
        it can."""
        planner, z = self.actor.planner, self._latent(obs)
        target = planner.bridge(z) if self.rng.random() < self.cfg.training.explore_bridge else None
        self.actor.cost.set_goal(planner.frontier(skip=skip, z=z) if target is None else target)

    def _frontier_done(self, obs: Any, heading: int) -> bool:
        """Whether an exploring episode is done with its landmark: within reach of it, or given up after
        ``training.explore_patience`` steps toward it (an episode of a large maze has time for several)."""
        return (heading >= self.cfg.training.explore_patience
                or self.actor.planner.reached(self._latent(obs), self.actor.cost.z_goal))

    def timing_summary(self) -> dict[str, float]:
        """Median / p95 milliseconds per training env step after seeding: plan (with exploration
        noise), env step (and bookkeeping), model update(s), and the whole step."""
        if not self.step_ms:
            return {}
        ms = np.asarray(self.step_ms)
        parts = {"plan": ms[:, 0], "env": ms[:, 1], "update": ms[:, 2], "step": ms.sum(1)}
        summary = {"steps_timed": len(ms)}
        for name, values in parts.items():
            summary[f"{name}_ms_median"] = float(np.median(values))
            summary[f"{name}_ms_p95"] = float(np.percentile(values, 95))
        return summary

    def _pretrain(self, writer: SummaryWriter) -> None:
        """After seeding, the updates the seed steps would have had (the update-to-data ratio, caught up)."""
        n = self.cfg.training.seed_steps * self.cfg.training.updates_per_step // self.cfg.training.update_every
        metrics: dict[str, float] = {}
        for _ in tqdm(range(n), disable=not self.progress, desc="pretrain", leave=False):
            metrics = self.update()
        self._sync_acting_model()
        for k, v in metrics.items():
            writer.add_scalar(k, v, self.step)

    def _evaluate(self, writer: SummaryWriter) -> dict[str, Any]:
        actor = self.actor
        if self.cfg.evaluation:  # the launch file's decision-time settings for evaluation
            if self._eval_actor is None:  # env.kwargs may change there too: a new evaluation env
                eval_cfg = eval_overrides(self.cfg, None)
                self.eval_env = make_env(eval_cfg)
                self._eval_actor = make_actor(eval_cfg, self.model, self.action_dim, self.device, env=self.eval_env)
            actor = self._eval_actor
        landmarks_from_replay(actor, self.replay)  # a hierarchy routes over the replay (else a no-op)
        result = evaluate(self.eval_env, actor, self.cfg.training.eval_episodes, seed=0)
        result = {"step": self.step, **result}
        self.history.append(result)
        for k, v in result.items():
            if isinstance(v, (int, float)) and k != "step":
                writer.add_scalar(f"eval/{k}", v, self.step)
        with open(self.run_dir / "eval.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
        return result
