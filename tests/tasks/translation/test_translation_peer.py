"""The Transformer peer's wall-time budget (tools/translation_peer.py --time-budget, issue 24)."""

import time
from types import SimpleNamespace

import numpy as np

from helpers import load_tool
from tasks.common.config import TrainConfig
from tasks.translation.config import ScheduleConfig
from tasks.translation.train import make_optimizer


def test_budget_schedule_starts_as_the_lstm_schedule():
    """Before any refit, the peer's schedule is make_optimizer's warm-up + cosine for the same steps."""
    peer = load_tool("translation_peer")
    schedule, steps = ScheduleConfig(), 50
    learning_rate, _ = peer._budget_parts(2e-3, schedule, 12 * steps, steps, budget_seconds=60)
    reference = make_optimizer(TrainConfig(epochs=12, learning_rate=2e-3), schedule, steps)
    reference = reference._learning_rate  # the schedule object (.learning_rate is its current value)
    for step in (0, 30, 59, 60, 61, 300, 599, 600, 700):
        assert np.isclose(float(learning_rate(step)), float(reference(step)), rtol=1e-5), step


def test_time_budget_refits_the_schedule_and_stops_at_the_epochs_that_fit():
    peer = load_tool("translation_peer")
    steps = 10
    learning_rate, budget = peer._budget_parts(1e-3, ScheduleConfig(), 12 * steps, steps, budget_seconds=100)
    budget.set_model(SimpleNamespace(stop_training=False))
    budget.on_train_begin()
    budget.started = time.time() - 30  # one epoch took 30 s: 100 s fit round(3.3) = 3 epochs
    budget.on_epoch_end(0)
    total = lambda: float(learning_rate.decay_steps.numpy()) + learning_rate.warmup_steps  # noqa: E731
    assert total() == 3 * steps and not budget.model.stop_training
    assert float(learning_rate(3 * steps)) == float(learning_rate(10 * steps))  # the decay now ends at 3 epochs
    budget.started = time.time() - 60  # two epochs at 30 s: still 3
    budget.on_epoch_end(1)
    assert not budget.model.stop_training
    budget.started = time.time() - 120  # slower than thought (40 s each): stop, never fewer epochs than done
    budget.on_epoch_end(2)
    assert total() == 3 * steps and budget.model.stop_training
