"""One module per batched task: cartpole (gymnasium CartPole-v1 in torch), navigation (VBot-like)."""
