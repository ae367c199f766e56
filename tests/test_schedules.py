"""Learning-rate schedules run for any number of steps: a handful of products must train with defaults."""
import pytest
import torch

from cdiscount.train import TrainConfig, _scheduler
from conftest import config


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
@pytest.mark.parametrize("steps", range(1, 13))
def test_every_schedule_steps_through_a_short_phase(schedule: str, steps: int) -> None:
    """On today's OneCycleLR, 4 steps (2 epochs of 88 pictures at batch 64) raised ZeroDivisionError."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=0.01)
    sched = _scheduler(config(TrainConfig, schedule=schedule), opt, 0.01, steps)
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert all(0 <= lr <= 0.01 + 1e-12 for lr in lrs) and len(lrs) == steps
    if schedule == "constant":
        assert lrs == [0.01] * steps
