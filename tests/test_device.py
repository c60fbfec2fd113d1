"""Device normalisation: 'cuda' and 'cuda:0' are one device (the crash of issue 12, caught without a GPU)."""
from __future__ import annotations

import pytest
import torch

import envs
from envs.batched import normalize_device, same_device


def test_index_less_cuda_gets_the_current_index():
    # torch.device objects need no GPU; the current index is passed in, so nothing asks CUDA.
    assert torch.device("cuda") != torch.device("cuda:0")  # the trap: plain equality says "different"
    assert normalize_device("cuda", current_index=0) == torch.device("cuda:0")
    assert normalize_device(torch.device("cuda"), current_index=1) == torch.device("cuda:1")
    assert normalize_device("cuda:1", current_index=0) == torch.device("cuda:1")  # an explicit index is kept
    assert normalize_device("cpu") == torch.device("cpu")
    assert normalize_device(torch.device("cpu"), current_index=3) == torch.device("cpu")


def test_same_device_compares_normalised_devices():
    assert same_device(torch.device("cuda"), torch.device("cuda:0"), current_index=0)
    assert same_device("cuda:0", "cuda", current_index=0)
    assert not same_device("cuda", "cuda:1", current_index=0)
    assert not same_device("cuda:0", "cpu", current_index=0)
    assert same_device("cpu", torch.device("cpu"))


def _fake_cuda_actions(n: int) -> torch.Tensor:
    """A tensor that reports device cuda:0 without a GPU (torch's FakeTensor: metadata only)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        return torch.empty(n, dtype=torch.int64, device="cuda")


def test_env_action_check_accepts_cuda0_actions_on_a_cuda_env(monkeypatch):
    """The crash: an env made with device 'cuda' refused actions that report 'cuda:0'. Caught here on CPU:
    torch.cuda's two queries say "one GPU, current index 0", and the actions are a FakeTensor on cuda:0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    env = envs.make("cartpole", 4, device="cpu", seed=0)
    env.reset()
    actions = _fake_cuda_actions(4)
    assert actions.device == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"actions: on cuda:0 \(allowed: cpu\)"):
        env._check_actions(actions)
    for spelling in ("cuda", "cuda:0", "auto"):
        env.device = envs.resolve_device(spelling)  # what BatchedEnv.__init__ does with its device argument
        assert env.device == torch.device("cuda:0")
        env._check_actions(actions)  # no ValueError
    env.device = torch.device("cuda")  # even an un-normalised device compares equal now
    env._check_actions(actions)
    env.device = torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"actions: on cuda:0 \(allowed: cuda:1\)"):
        env._check_actions(actions)


def test_resolve_device_is_the_one_normaliser():
    from automl.train import sb3_train as training, torch_train

    # the trainers have no normaliser of their own: they use envs.resolve_device (as str in checkpoint headers)
    assert not hasattr(training, "resolve_device") and not hasattr(torch_train, "resolve_device")
    assert envs.resolve_device("cpu") == torch.device("cpu")
    assert str(envs.resolve_device("cpu")) == "cpu"
    if torch.cuda.is_available():
        assert envs.resolve_device("auto") == torch.device(f"cuda:{torch.cuda.current_device()}")
        assert str(envs.resolve_device("cuda")) == f"cuda:{torch.cuda.current_device()}"
    else:
        assert str(envs.resolve_device("auto")) == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            envs.resolve_device("cuda")
        for train in (lambda: training.train_seed({}, env="cartpole", seed=0, total_steps=64, device="cuda"),
                      lambda: torch_train.train_seeds_torch({}, env="cartpole", seeds=[0], total_steps=64,
                                                            device="cuda")):
            with pytest.raises(ValueError, match="CUDA is not available"):
                train()  # both trainers normalise through envs.resolve_device before building anything
    with pytest.raises(ValueError, match="not a torch device"):
        envs.resolve_device("gpu0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("spelling", ["cuda", "cuda:0", "auto"])
def test_cuda_env_steps_with_any_spelling(spelling):
    env = envs.make("navigation", 8, device=spelling, seed=0)
    env.reset()
    env.step(torch.zeros(8, 2, device="cuda"))
    env.step(torch.zeros(8, 2, device=env.device))
