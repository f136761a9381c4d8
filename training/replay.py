"""A replay buffer that mixes demonstrations into every batch (RLPD: symmetric sampling).

Each gradient step draws `demo_ratio` of its batch from the demonstrations and the rest from the
online data, from the very first update; with `decay_steps` > 0 the demonstrations' share falls
linearly to zero over that many online transitions (WSRL-style: the offline data leads, then lets go).
Until the online part holds a transition, the whole batch comes from the demonstrations.

With `n_steps` > 1 both parts give n-step targets: the online part through SB3's `NStepReplayBuffer`,
the demonstrations precomputed once per row (`n_step_rows`): the discounted sum of the next n rewards
within the episode, the observation and fall flag n steps on, and the discount gamma^k left for the
critic's bootstrap (k < n where the episode ends first). Expert takeovers join the demonstrations as
one-step rows (they arrive one at a time; the online part holds them with n-step targets too).
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples


# ReplayBufferSamples' tensors (`discounts`: gamma^k, the bootstrap's discount after k reward steps)
FIELDS = ("observations", "actions", "next_observations", "dones", "rewards", "discounts")


class DemoMixReplayBuffer(NStepReplayBuffer):
    def __init__(self, *args, demo_ratio: float = 0.5, decay_steps: int = 0, n_steps: int = 1, gamma: float = 0.99,
                 **kwargs) -> None:
        super().__init__(*args, n_steps=n_steps, gamma=gamma, **kwargs)
        if not 0.0 <= demo_ratio <= 1.0:
            raise ValueError(f"demo_ratio must be in [0, 1], got {demo_ratio}")
        self.demo_ratio, self.decay_steps = demo_ratio, decay_steps
        self.demos: dict[str, torch.Tensor] | None = None
        self.added = 0                                   # online transitions added so far
        self.drawn = {"demo": 0, "online": 0}            # rows sampled from each part (for the logs)
        self.interventions: list[tuple] = []             # expert takeovers not yet among the demonstrations
        self.intervention_rows = 0

    def set_demos(self, transitions: dict[str, np.ndarray]) -> None:
        """(obs, next_obs, actions, rewards, dones[, ends]) rows, e.g. `Demonstrations.transitions()`;
        `ends` marks each episode's last row (needed for n-step rows; without it, only falls end one)."""
        if len(transitions["obs"]) == 0:
            raise ValueError("no demonstration transitions")
        self.demos = _tensors(n_step_rows(transitions, self.n_steps, self.gamma))

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        """Online transitions; steps the expert took over (`info["intervened"]`, training.interventions)
        are stored with the action it executed, online and among the demonstrations."""
        action = np.array(action, copy=True)
        for i, info in enumerate(infos):
            if info.get("intervened"):
                action[i] = info["executed_action"]
                self.interventions.append((np.asarray(obs[i]).ravel(), np.asarray(next_obs[i]).ravel(),
                                           action[i].ravel(), float(reward[i]), float(done[i])))
        super().add(obs, next_obs, action, reward, done, infos)
        self.added += self.n_envs

    def _merge_interventions(self) -> None:
        if not self.interventions:
            return
        rows = {"obs": [r[0] for r in self.interventions], "next_obs": [r[1] for r in self.interventions],
                "actions": [r[2] for r in self.interventions], "rewards": [r[3] for r in self.interventions],
                "dones": [r[4] for r in self.interventions],
                "discounts": [self.gamma] * len(self.interventions)}
        new = _tensors({k: np.asarray(v) for k, v in rows.items()})
        self.demos = new if self.demos is None else {k: torch.cat([self.demos[k], new[k]]) for k in new}
        self.intervention_rows += len(self.interventions)
        self.interventions = []

    def current_ratio(self) -> float:
        """The demonstrations' share of the next batch."""
        if self.demos is None:
            return 0.0
        if self.decay_steps > 0:
            return self.demo_ratio * max(0.0, 1.0 - self.added / self.decay_steps)
        return self.demo_ratio

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        self._merge_interventions()
        online_rows = self.buffer_size if self.full else self.pos
        n_demo = int(round(self.current_ratio() * batch_size)) if online_rows else batch_size
        n_demo = n_demo if self.demos is not None else 0
        n_online = batch_size - n_demo
        parts = []
        if n_online:
            parts.append(super().sample(n_online, env))
        if n_demo:
            idx = torch.randint(0, len(self.demos["observations"]), (n_demo,))
            parts.append(ReplayBufferSamples(*(self.demos[k][idx].to(self.device) for k in FIELDS)))
        self.drawn["demo"] += n_demo
        self.drawn["online"] += n_online
        if len(parts) == 1:
            return parts[0]
        return ReplayBufferSamples(*(torch.cat([getattr(p, k) for p in parts]) for k in FIELDS))


def n_step_rows(t: dict[str, np.ndarray], n: int, gamma: float) -> dict[str, np.ndarray]:
    """One-step transition rows in episode order -> n-step rows: for row i, the rewards of rows i..i+k-1
    discounted (k = n, or fewer where the episode ends first, by a fall or by its time limit), the
    next observation and fall flag of row i+k-1, and the bootstrap discount gamma^k."""
    rewards, dones = np.asarray(t["rewards"], np.float64), np.asarray(t["dones"], bool)
    ends = np.asarray(t.get("ends", dones), bool) | dones
    rows = len(rewards)
    last = np.arange(rows)                      # the row where each n-step window stops
    total = rewards.copy()
    open_ = ~ends                               # windows that may still grow
    for k in range(1, n):
        nxt = last + 1
        grow = open_ & (nxt < rows)
        total[grow] += gamma ** k * rewards[nxt[grow]]
        last[grow] = nxt[grow]
        open_ = grow & ~ends[np.minimum(nxt, rows - 1)]
    steps = last - np.arange(rows) + 1
    return {"obs": t["obs"], "actions": t["actions"], "next_obs": np.asarray(t["next_obs"])[last],
            "rewards": total.astype(np.float32), "dones": dones[last].astype(np.float32),
            "discounts": (gamma ** steps).astype(np.float32)}


def _tensors(rows: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    n = len(rows["obs"])
    return {"observations": torch.as_tensor(rows["obs"], dtype=torch.float32).reshape(n, -1),
            "next_observations": torch.as_tensor(rows["next_obs"], dtype=torch.float32).reshape(n, -1),
            "actions": torch.as_tensor(rows["actions"], dtype=torch.float32).reshape(n, -1),
            "rewards": torch.as_tensor(rows["rewards"], dtype=torch.float32).reshape(n, 1),
            "dones": torch.as_tensor(rows["dones"], dtype=torch.float32).reshape(n, 1),
            "discounts": torch.as_tensor(rows["discounts"], dtype=torch.float32).reshape(n, 1)}
