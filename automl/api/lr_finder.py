"""Smith's learning-rate range test: exponential LR steps, smoothed loss, divergence stop.

    finder = LearningRateFinder(model, torch.optim.SGD, LRFinderConfig(num_steps=100))
    result = finder.find(train_loader, torch.nn.MSELoss())
    low, high = finder.suggested_lr()      # e.g. SearchSpace().add_float("learning_rate", low, high, log=True)

The model's and optimizer's state are restored afterwards, so the test leaves no trace.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from automl.core.errors import AutoMLError


@dataclass(frozen=True)
class LRFinderConfig:
    """The range test's sweep: start_lr -> end_lr in num_steps batches (seed 000's fields)."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 100
    smooth_factor: float = 0.05  # weight of the newest loss in the exponential moving average
    divergence_threshold: float = 5.0  # stop when the smoothed loss exceeds this times the best one

    def __post_init__(self):
        if not (0 < self.start_lr < self.end_lr) or not math.isfinite(self.end_lr):
            raise AutoMLError(f"LRFinderConfig: start_lr/end_lr: {self.start_lr}, {self.end_lr} "
                              f"(allowed: 0 < start_lr < end_lr, finite)")
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 5:
            raise AutoMLError(f"LRFinderConfig: num_steps: {self.num_steps!r} (allowed: an integer >= 5)")
        if not 0 < self.smooth_factor <= 1:
            raise AutoMLError(f"LRFinderConfig: smooth_factor: {self.smooth_factor} (allowed: (0, 1])")
        if not self.divergence_threshold > 1:
            raise AutoMLError(f"LRFinderConfig: divergence_threshold: {self.divergence_threshold} (allowed: > 1)")

    def lr_at(self, step: int) -> float:
        """The learning rate of step `step`: geometric from start_lr to end_lr."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))


@dataclass
class LRFinderResult:
    """The curve (lrs, smoothed and raw losses) and the suggested (min_lr, max_lr) range."""

    lrs: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    min_lr: float
    max_lr: float
    best_lr: float  # lr at the lowest smoothed loss
    diverged: bool
    config: LRFinderConfig = field(default_factory=LRFinderConfig)

    @property
    def suggested(self) -> tuple[float, float]:
        """(min_lr, max_lr)."""
        return self.min_lr, self.max_lr


def suggest_bounds(lrs: list[float], losses: list[float]) -> tuple[float, float, float]:
    """(min_lr, max_lr, best_lr) from a smoothed curve.

    max_lr is where the smoothed loss is lowest (beyond it training gets unstable); min_lr is
    where the loss falls, for good, a third of its total drop below its starting level (the
    mean of the first tenth of the curve): from there on, learning pays. A third, not less:
    the smoothed plateau wanders by a few per cent of its level, which a small fraction of the
    drop cannot tell from learning. On a flat curve min_lr = max_lr / 10.
    """
    if len(lrs) < 3:
        raise AutoMLError(f"LearningRateFinder: only {len(lrs)} finite losses recorded (allowed: at least 3; "
                          f"lower start_lr or raise divergence_threshold)")
    arr = np.asarray(losses, dtype=float)
    best = int(np.argmin(arr))
    level = float(np.mean(arr[:max(1, len(arr) // 10)]))  # the starting level, averaged against noise
    drop = level - arr[best]
    above = np.flatnonzero(arr[:best + 1] > level - drop / 3) if drop > 0 else np.array([best])
    start = min(int(above[-1]) + 1, best) if above.size else 0
    max_lr, min_lr = lrs[best], lrs[start]
    if min_lr >= max_lr:
        min_lr = max_lr / 10
    return float(min_lr), float(max_lr), float(lrs[best])


def range_test(optimizer: torch.optim.Optimizer, batches: Iterable, loss_fn: Callable[[object], torch.Tensor],
               config: LRFinderConfig, before_step: Callable[[], None] | None = None) -> LRFinderResult:
    """The sweep itself: for each step set the LR, take one optimizer step on one batch, record the loss.

    ``batches`` is cycled when it is shorter than num_steps; stops at a non-finite loss or divergence.
    ``before_step()`` runs between backward() and step() (e.g. gradient clipping).
    """
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    average = 0.0
    diverged = False
    stream = _cycle(batches)
    for step in range(config.num_steps):
        lr = config.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = loss_fn(next(stream))
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged = True
            break
        loss.backward()
        if before_step is not None:
            before_step()
        optimizer.step()
        lrs.append(lr)
        raw.append(value)
        # bias-corrected moving average (as Adam's moments): a weighted mean of the losses so far, so the
        # curve is not pinned to the first batch's loss and then drifts for ~1/smooth_factor steps (a drift
        # the bounds would read as learning: the old cause of lower bounds ~1e-6)
        average = config.smooth_factor * value + (1 - config.smooth_factor) * average
        smoothed.append(average / (1 - (1 - config.smooth_factor) ** len(raw)))
        best = min(smoothed)  # written as a gap so a negative loss (PPO's surrogate) diverges sensibly too
        if step > 0 and smoothed[-1] - best > (config.divergence_threshold - 1) * max(abs(best), 1e-12):
            diverged = True
            break
    min_lr, max_lr, best_lr = suggest_bounds(lrs, smoothed)
    return LRFinderResult(lrs, smoothed, raw, min_lr, max_lr, best_lr, diverged, config)


def _cycle(batches: Iterable):
    """Yield batches forever, restarting the iterable (a DataLoader reshuffles) when it runs out."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise AutoMLError("LearningRateFinder: train_loader yielded no batch (allowed: a non-empty loader)")


class LearningRateFinder:
    """LR range test on a torch model: find(train_loader, criterion), plot(), suggested_lr()."""

    def __init__(self, model: torch.nn.Module, optimizer_cls, config: LRFinderConfig | None = None,
                 **optimizer_kwargs):
        """optimizer_cls: an optimizer class (built on model.parameters()) or an optimizer instance."""
        self.model = model
        self.optimizer_cls = optimizer_cls
        self.config = config or LRFinderConfig()
        self.optimizer_kwargs = optimizer_kwargs
        self.result: LRFinderResult | None = None

    def _optimizer(self) -> torch.optim.Optimizer:
        if isinstance(self.optimizer_cls, torch.optim.Optimizer):
            return self.optimizer_cls
        if not (isinstance(self.optimizer_cls, type) and issubclass(self.optimizer_cls, torch.optim.Optimizer)):
            raise AutoMLError(f"LearningRateFinder: optimizer_cls: {self.optimizer_cls!r} "
                              f"(allowed: a torch.optim.Optimizer class or instance)")
        # a concrete optimizer class: its constructor takes lr (the base class's takes defaults)
        make: Callable[..., torch.optim.Optimizer] = self.optimizer_cls
        return make(self.model.parameters(), lr=self.config.start_lr, **self.optimizer_kwargs)

    def find(self, train_loader: Iterable, criterion: Callable) -> LRFinderResult:
        """Run the range test over (inputs, targets) batches with loss criterion(model(inputs), targets)."""
        device = next(self.model.parameters()).device

        def loss_fn(batch):
            inputs, targets = batch[0].to(device), batch[1].to(device)
            return criterion(self.model(inputs), targets)

        self.result = self.find_with(train_loader, loss_fn)
        return self.result

    def find_with(self, batches: Iterable, loss_fn: Callable[[object], torch.Tensor],
                  before_step: Callable[[], None] | None = None) -> LRFinderResult:
        """Range test with a custom loss_fn(batch) -> scalar tensor (e.g. the PPO loss)."""
        optimizer = self._optimizer()
        saved_model = copy.deepcopy(self.model.state_dict())
        saved_opt = copy.deepcopy(optimizer.state_dict())
        was_training = self.model.training
        self.model.train()
        try:
            self.result = range_test(optimizer, batches, loss_fn, self.config, before_step)
        finally:
            self.model.load_state_dict(saved_model)
            optimizer.load_state_dict(saved_opt)  # restores the lrs of its param groups too
            self.model.train(was_training)
        return self.result

    def suggested_lr(self) -> tuple[float, float]:
        """(min_lr, max_lr) of the last find(); use them as a log-uniform learning_rate range."""
        if self.result is None:
            raise AutoMLError("LearningRateFinder: suggested_lr: no result yet (allowed: call find() first)")
        return self.result.suggested

    def plot(self):
        """Loss vs learning rate (log x) with the suggested range shaded: a matplotlib Figure."""
        if self.result is None:
            raise AutoMLError("LearningRateFinder: plot: no result yet (allowed: call find() first)")
        return plot_result(self.result)


def plot_result(result: LRFinderResult):
    """A Figure of a range test (no pyplot state: fine in scripts, servers and notebooks)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.raw_losses, color="0.75", lw=0.8, label="loss")
    ax.plot(result.lrs, result.losses, color="tab:blue", label="smoothed loss")
    ax.axvspan(result.min_lr, result.max_lr, color="tab:green", alpha=0.15,
               label=f"suggested [{result.min_lr:.2g}, {result.max_lr:.2g}]")
    ax.set_xscale("log")
    top = max(result.losses[:result.losses.index(min(result.losses)) + 1])  # the final blow-up would flatten the rest
    span = top - min(result.losses)
    if span > 0:
        ax.set_ylim(min(result.losses) - 0.2 * span, top + 0.6 * span)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("Learning-rate range test" + (" (stopped at divergence)" if result.diverged else ""))
    ax.legend()
    fig.tight_layout()
    return fig

