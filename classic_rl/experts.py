"""SB3 experts on gymnasium testbeds: documented settings, a content-addressed cache, demonstrations, evaluation.

* ``EXPERT_CONFIGS``: per env id, the SB3 algorithm and its hyperparameters, taken from rl-baselines3-zoo's
  ``hyperparams/<algo>.yml`` (``lin_X`` there is a schedule linear from ``X`` to 0, written ``"lin_X"`` here).
  ``default_timesteps`` is the budget :func:`train_expert` uses when none is given: rl-zoo's where that is
  affordable on 2 CPU cores, otherwise a smaller one that is noted next to it.
* :func:`train_expert` trains one and caches it as an SB3 ``.zip`` under a content-addressed name (a hash of the
  env id, algorithm, hyperparameters, vectorization, seed, budget and library versions), written atomically.
  :func:`cached_model` is the generic cache behind it (``segment_preferences.expert_policy`` uses it too).
* :func:`rollout_demonstrations`: expert episodes as :class:`RolloutDemonstrations` (``Demonstrations`` plus
  per-episode ``terminated``, ``final_observations`` and true ``returns``).
* :func:`evaluate_policy_return` / :func:`random_policy_return`: mean, std and per-episode returns on the *true*
  reward over seeded episodes (episode ``i`` is reset with ``seed + i``).

Episode semantics: ``RolloutDemonstrations.terminated[n]`` says whether episode ``n``
*terminated* (the MDP reached a terminal state: CartPole fell, MountainCar reached the goal) as opposed to
being *truncated* by the time limit. Only a termination is followed by the absorbing state (see
``irl_bilevel.objectives.SampleMaxEntObjective``); a truncation just stops recording. ``final_observations[n]``
is the observation after the last action (the terminal state for a terminated episode), so every recorded
step has a next state.

Security: loading an SB3 ``.zip`` unpickles parts of it. The cache only ever holds files this module wrote
(it never downloads models); do not point ``cache_dir`` / ``$IRL_BILEVEL_CACHE`` at a folder others can write.
SB3's ``<Algorithm>.load`` is the documented way to load these files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from irl_bilevel.feedback import Demonstrations
from irl_bilevel.precision import default_dtype
from irl_bilevel.validation import ValidationError, as_tensor, check_shape

CACHE_ENV = "IRL_BILEVEL_CACHE"


@dataclass(frozen=True)
class ExpertConfig:
    """How to train one expert: SB3 algorithm name, vectorized envs, hyperparameters, default budget."""

    algorithm: str
    hyperparameters: dict[str, Any]
    n_envs: int = 1
    default_timesteps: int = 100_000
    source: str = "rl-baselines3-zoo"
    notes: str = ""


# rl-baselines3-zoo hyperparams (ppo.yml, sac.yml, dqn.yml). Only JSON-serializable values, so the cache key
# is exact; "lin_X" strings become linear schedules.
EXPERT_CONFIGS: dict[str, ExpertConfig] = {
    "CartPole-v1": ExpertConfig(
        "ppo",
        {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
         "learning_rate": "lin_0.001", "clip_range": "lin_0.2"},
        n_envs=8, default_timesteps=100_000,
    ),
    "Pendulum-v1": ExpertConfig(
        "sac", {"learning_rate": 1e-3}, default_timesteps=20_000,
        notes="rl-zoo budget 20k",
    ),
    "Acrobot-v1": ExpertConfig(
        "dqn",
        {"learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0, "gamma": 0.99,
         "target_update_interval": 250, "train_freq": 4, "gradient_steps": -1, "exploration_fraction": 0.12,
         "exploration_final_eps": 0.1, "policy_kwargs": {"net_arch": [256, 256]}},
        default_timesteps=100_000,
        notes="rl-zoo's DQN entry (its PPO entry needs VecNormalize, which a plain .zip does not carry)",
    ),
    "MountainCar-v0": ExpertConfig(
        "dqn",
        {"learning_rate": 4e-3, "batch_size": 128, "buffer_size": 10_000, "learning_starts": 1000, "gamma": 0.98,
         "target_update_interval": 600, "train_freq": 16, "gradient_steps": 8, "exploration_fraction": 0.2,
         "exploration_final_eps": 0.07, "policy_kwargs": {"net_arch": [256, 256]}},
        default_timesteps=120_000,
    ),
    "MountainCarContinuous-v0": ExpertConfig(
        "sac",
        {"learning_rate": 3e-4, "buffer_size": 50_000, "batch_size": 512, "ent_coef": 0.1, "train_freq": 32,
         "gradient_steps": 32, "gamma": 0.9999, "tau": 0.01, "learning_starts": 0, "use_sde": True,
         "policy_kwargs": {"log_std_init": -3.67, "net_arch": [64, 64]}},
        default_timesteps=50_000,
    ),
}


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# Optional testbeds: each needs an extra (`pip install -e '.[box2d]'` / `'.[mujoco]'`); listed only when installed.
if _importable("Box2D"):  # pragma: no cover
    EXPERT_CONFIGS["LunarLander-v3"] = ExpertConfig(
        "ppo",
        {"n_steps": 1024, "batch_size": 64, "gae_lambda": 0.98, "gamma": 0.999, "n_epochs": 4, "ent_coef": 0.01},
        n_envs=16, default_timesteps=1_000_000, notes="rl-zoo's LunarLander-v2 entry",
    )
if _importable("mujoco"):  # pragma: no cover - heavy configurations
    for _env_id in ("Hopper-v5", "HalfCheetah-v5"):
        EXPERT_CONFIGS[_env_id] = ExpertConfig(
            "sac", {"learning_starts": 10_000}, default_timesteps=1_000_000,
            notes="rl-zoo's SAC MuJoCo entry (defaults otherwise); hours on a CPU",
        )


def algorithm_class(name: str):
    """The SB3 class for ``ppo``, ``a2c``, ``sac``, ``dqn``, ``td3``."""
    import stable_baselines3 as sb3

    classes = {"ppo": sb3.PPO, "a2c": sb3.A2C, "sac": sb3.SAC, "dqn": sb3.DQN, "td3": sb3.TD3}
    if name not in classes:
        raise ValidationError(f"algorithm: unknown SB3 algorithm {name!r}; expected one of {sorted(classes)}")
    return classes[name]


def without_log_folder(model: Any) -> Any:
    """``model`` with a logger that writes nothing, unless it logs to TensorBoard (``tensorboard_log``).

    Without it, every ``learn()`` of an SB3 model opens a new ``SB3-<date>`` folder in the system temp folder
    (``stable_baselines3.common.logger.configure(None)``), even at ``verbose=0``; a logger with no outputs keeps
    the same ``logger.record`` calls and writes no file. Returns ``model``.
    """
    from stable_baselines3.common.logger import Logger

    if getattr(model, "tensorboard_log", None) is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def sb3_argument_error(error: Exception, algorithm: str, env_id: str, algorithm_field: str, settings_field: str,
                       settings: dict[str, Any]) -> ValidationError:
    """What an SB3 constructor's refusal means for the user: its assertion that the algorithm supports the env's
    action space names ``algorithm_field``; an unknown keyword (``TypeError``) or a value it cannot use (an
    assertion or ``ValueError`` about a setting, e.g. ``learning_rate="fast"``) names ``settings_field``."""
    reason = str(error).strip() or type(error).__name__
    if isinstance(error, AssertionError) and "action space" in reason:
        return ValidationError(f"{algorithm_field}: {algorithm} cannot act in {env_id}: {reason}")
    return ValidationError(f"{settings_field}: {algorithm} rejects its settings {sorted(settings)}: {reason}")


def sb3_hyperparameters(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Turn ``"lin_X"`` strings into SB3 linear schedules (``X · progress_remaining``)."""
    from stable_baselines3.common.utils import LinearSchedule

    out: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if isinstance(value, str) and value.startswith("lin_"):
            out[key] = LinearSchedule(float(value[4:]), 0.0, 1.0)
        elif isinstance(value, dict):
            out[key] = dict(value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------- the cache
def cache_dir(path: Path | str | None = None) -> Path:
    """``path``, else ``$IRL_BILEVEL_CACHE``, else ``~/.cache/irl_bilevel``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "irl_bilevel")


def library_versions() -> dict[str, str]:
    import stable_baselines3

    return {"sb3": stable_baselines3.__version__, "gymnasium": gym.__version__, "torch": torch.__version__}


def cache_path(prefix: str, key: dict[str, Any], cache: Path | str | None = None) -> Path:
    """``<cache>/experts/<prefix>-<sha256(key)[:16]>.zip``; ``key`` must be JSON-serializable."""
    text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return cache_dir(cache) / "experts" / f"{prefix}-{digest}.zip"


def cached_model(prefix: str, key: dict[str, Any], load: Callable[[Path], Any], train: Callable[[], Any],
                 cache: Path | str | None = None) -> Any:
    """Load the SB3 model cached under ``key``, or ``train()`` it and save it atomically.

    ``key`` must cover everything that determines the model; the file is written to a unique temporary name in
    the cache folder and renamed, so a killed run or a concurrent one never leaves a half-written ``.zip``.
    Only files written here are ever loaded (see the module docstring on unpickling).
    """
    path = cache_path(prefix, key, cache)
    if path.exists():
        return load(path)
    model = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".zip")
    os.close(handle)
    try:
        model.save(partial)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return model


def float32_default() -> AbstractContextManager[None]:
    """SB3 builds its networks in the default dtype and feeds them float32: keep a float64 default away."""
    return default_dtype(torch.float32)


def _check_env_id(env_id: str) -> ExpertConfig:
    if env_id not in EXPERT_CONFIGS:
        raise ValidationError(f"env_id: no expert configuration for {env_id!r}; expected one of "
                              f"{sorted(EXPERT_CONFIGS)}")
    return EXPERT_CONFIGS[env_id]


def expert_key(env_id: str, seed: int, total_timesteps: int, config: ExpertConfig) -> dict[str, Any]:
    return {"env": env_id, "algorithm": config.algorithm, "hyperparameters": config.hyperparameters,
            "n_envs": config.n_envs, "seed": seed, "total_timesteps": total_timesteps, **library_versions()}


def train_expert(env_id: str, seed: int = 0, cache_dir: Path | str | None = None,
                 total_timesteps: int | None = None, config: ExpertConfig | None = None, where: str = ""):
    """An SB3 expert trained on the true reward with ``EXPERT_CONFIGS[env_id]`` (or ``config``), cached.

    Returns the ``BaseAlgorithm`` (PPO, SAC, DQN, ...); a cache hit loads it with the algorithm's ``load``
    without training. The first call costs the training (see the README of ``benchmarks`` for times). An algorithm
    or settings SB3 refuses are a :class:`ValidationError` naming ``expert_algorithm`` or ``expert_hyperparameters``
    after the prefix ``where`` (a command's ``"gym-irl."``).
    """
    from stable_baselines3.common.env_util import make_vec_env

    config = config if config is not None else _check_env_id(env_id)
    budget = config.default_timesteps if total_timesteps is None else int(total_timesteps)
    if budget < 1:
        raise ValidationError(f"total_timesteps: expected a positive budget, got {budget}")
    cls = algorithm_class(config.algorithm)

    def train():
        env = make_vec_env(env_id, n_envs=config.n_envs, seed=seed)
        with torch.random.fork_rng(devices=[]), float32_default():
            try:
                model = without_log_folder(cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0,
                                               **sb3_hyperparameters(config.hyperparameters)))
            except (AssertionError, TypeError, ValueError) as error:  # SB3's checks of its arguments
                env.close()
                raise sb3_argument_error(error, config.algorithm, env_id, f"{where}expert_algorithm",
                                         f"{where}expert_hyperparameters", config.hyperparameters) from error
            model.learn(total_timesteps=budget)
        env.close()
        return model

    return cached_model(f"{env_id}-{config.algorithm}", expert_key(env_id, seed, budget, config),
                        lambda path: _load(cls, path), train, cache_dir)


def _load(cls, path: Path):
    with float32_default():
        return cls.load(path, device="cpu")


# ---------------------------------------------------------------------- demonstrations and evaluation
@dataclass
class RolloutDemonstrations(Demonstrations):
    """Demonstrations with the episode ends made explicit.

    ``terminated [N]`` (bool): the episode reached a terminal state (absorbing afterwards) rather than the time
    limit; ``final_observations [N, *obs]``: the observation after the last recorded action; ``returns [N]``:
    the true (environment) return of each episode. Per step, ``dones[n, t]`` is ``terminated[n]`` at
    ``t = lengths[n] − 1`` and False elsewhere.
    """

    terminated: torch.Tensor | None = None
    final_observations: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self)
        if self.terminated is None:
            self.terminated = torch.zeros(n, dtype=torch.bool)
        self.terminated = as_tensor(self.terminated, "terminated").bool()
        check_shape(self.terminated, "terminated", [n])
        if self.final_observations is not None:
            self.final_observations = as_tensor(self.final_observations, "final_observations")
            check_shape(self.final_observations, "final_observations", [n, *self.observations.shape[2:]])
        if self.returns is not None:
            self.returns = as_tensor(self.returns, "returns", torch.float64)
            check_shape(self.returns, "returns", [n])

    @property
    def dones(self) -> torch.Tensor:
        """``[N, T]``: True on the last step of a terminated episode."""
        assert self.terminated is not None
        last = torch.arange(self.observations.shape[1]).unsqueeze(0) == (self.lengths - 1).unsqueeze(1)
        return last & self.terminated.unsqueeze(1)

    def subset(self, indices: torch.Tensor | Sequence[int]):
        index = torch.as_tensor(indices, dtype=torch.long)
        assert self.terminated is not None
        return RolloutDemonstrations(
            self.observations[index], self.actions[index], self.lengths[index], self.num_states, self.num_actions,
            self.terminated[index], None if self.final_observations is None else self.final_observations[index],
            None if self.returns is None else self.returns[index], dict(self.extra))


def _actor(policy_or_model: Any, deterministic: bool) -> Callable[[np.ndarray], np.ndarray]:
    if hasattr(policy_or_model, "predict"):
        def act(observation: np.ndarray) -> np.ndarray:
            action, _ = policy_or_model.predict(observation, deterministic=deterministic)
            return np.asarray(action)
        return act
    if callable(policy_or_model):
        return lambda observation: np.asarray(policy_or_model(observation))
    raise ValidationError(f"policy_or_model: expected an SB3 model/policy with predict() or a callable, got "
                          f"{type(policy_or_model).__name__}")


def _check_count(value: int, name: str) -> None:
    if int(value) < 1:
        raise ValidationError(f"{name}: expected at least 1, got {value}")


def _episode(env: gym.Env, act: Callable[[np.ndarray], np.ndarray], seed: int):
    observation, _ = env.reset(seed=seed)
    observations, actions, rewards = [], [], []
    while True:
        action: Any = act(observation)
        if isinstance(env.action_space, gym.spaces.Discrete):
            action = int(np.asarray(action).reshape(-1)[0])
        next_observation, reward, terminated, truncated, _ = env.step(action)
        observations.append(np.asarray(observation, dtype=np.float32))
        actions.append(action)
        rewards.append(float(reward))
        observation = next_observation
        if terminated or truncated:
            return observations, actions, rewards, bool(terminated), np.asarray(observation, dtype=np.float32)


def rollout_demonstrations(model: Any, env_id: str, num_episodes: int, seed: int,
                           deterministic: bool = True) -> RolloutDemonstrations:
    """``num_episodes`` episodes of ``model`` (episode ``i`` reset with ``seed + i``) as demonstrations.

    Observations are float32 ``[N, T, obs_dim]``; actions int64 ``[N, T]`` (``num_actions`` set) for Discrete
    spaces and float32 ``[N, T, act_dim]`` for Box spaces; ``lengths``, ``terminated``, ``final_observations``
    and true ``returns`` as in :class:`RolloutDemonstrations`.
    """
    _check_count(num_episodes, "num_episodes")
    act = _actor(model, deterministic)
    env = gym.make(env_id)
    episodes = [_episode(env, act, seed + i) for i in range(num_episodes)]
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    num_actions = int(env.action_space.n) if isinstance(env.action_space, gym.spaces.Discrete) else None
    env.close()
    dtype = np.int64 if discrete else np.float32
    observations = [np.stack(e[0]) for e in episodes]
    actions = [np.asarray(e[1], dtype=dtype).reshape(len(e[1]), *(() if discrete else (-1,))) for e in episodes]
    base = Demonstrations.from_sequences(observations, actions, num_actions=num_actions)
    return RolloutDemonstrations(
        base.observations, base.actions, base.lengths, None, num_actions,
        torch.tensor([e[3] for e in episodes]), torch.from_numpy(np.stack([e[4] for e in episodes])),
        torch.tensor([sum(e[2]) for e in episodes], dtype=torch.float64), {"env_id": env_id, "seed": seed})


def evaluate_policy_return(policy_or_model: Any, env_id: str, num_episodes: int, seed: int,
                           deterministic: bool = True) -> tuple[float, float, np.ndarray]:
    """``(mean, std, returns)`` of the true (environment) return over ``num_episodes`` seeded episodes.

    ``policy_or_model``: anything with SB3's ``predict(obs, deterministic)`` (a model or a policy), or a callable
    ``obs -> action``. Episode ``i`` is reset with ``seed + i``.
    """
    _check_count(num_episodes, "num_episodes")
    act = _actor(policy_or_model, deterministic)
    env = gym.make(env_id)
    returns = np.asarray([sum(_episode(env, act, seed + i)[2]) for i in range(num_episodes)])
    env.close()
    return float(returns.mean()), float(returns.std()), returns


def uniform_random_policy(env_id: str, seed: int) -> Callable[[np.ndarray], Any]:
    """The uniformly random policy of ``env_id``'s action space, ``observation -> action``, actions seeded by
    ``seed``."""
    env = gym.make(env_id)
    space = env.action_space
    env.close()
    space.seed(seed)
    return lambda observation: space.sample()


def random_policy_return(env_id: str, num_episodes: int, seed: int) -> tuple[float, float, np.ndarray]:
    """The uniformly random policy's true return, ``(mean, std, returns)``, its actions seeded by ``seed``."""
    return evaluate_policy_return(uniform_random_policy(env_id, seed), env_id, num_episodes, seed)


def normalized_return(value: float, random: float, expert: float) -> float:
    """``(value − random) / (expert − random)``: 0 for the random policy, 1 for the expert."""
    return (value - random) / (expert - random)
