"""gymnasium's own envs as references for the batched tasks' parity tests."""
import gymnasium as gym


def gym_refs(env_id: str, n: int) -> list:
    """``n`` unwrapped gymnasium envs of ``env_id``, reset (the tests then set their state)."""
    out = []
    for _ in range(n):
        env = gym.make(env_id).unwrapped
        env.reset(seed=0)
        out.append(env)
    return out
