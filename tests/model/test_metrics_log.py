"""What a pretraining run shows while it runs: a first line at once, and an ETA that knows
phase 2's steps carry four times the tokens of phase 1's."""

from __future__ import annotations

import time

from model.metrics_log import MetricsLog, format_duration

PHASES = [(0, 90, 256 * 128), (90, 100, 256 * 512)]  # the paper's 90/10 split, scaled down


def phased_log(output, *, start_step: int) -> MetricsLog:
    """A run of 100 steps in PHASES, off a terminal, started (or resumed) at start_step."""
    return MetricsLog(
        output,
        enabled=True,
        start_step=start_step,
        total_steps=100,
        tensorboard=False,
        progress=False,
        step_tokens=PHASES,
    )


def test_the_eta_counts_phase_two_at_its_cost(tmp_path, capsys):
    log = phased_log(tmp_path, start_step=0)
    # Not on a terminal: a line at once, before the first log interval.
    assert capsys.readouterr().out == "step 0/100: started; a line every log interval\n"
    log.started = time.perf_counter() - 45.0  # 45 steps of phase 1 in 45 s
    # 45 phase-1 steps left (45 s) and 10 phase-2 steps of 4x the tokens (40 s); counting
    # steps alike would say 55 s.
    assert log.eta(45) == format_duration(85.0)
    assert log.tokens_between(80, 95) == 10 * 256 * 128 + 5 * 256 * 512
    log.close()


def test_a_resumed_run_measures_its_rate_from_where_it_resumed(tmp_path):
    log = phased_log(tmp_path, start_step=90)
    log.started = time.perf_counter() - 20.0  # 5 phase-2 steps in 20 s
    assert log.eta(95) == format_duration(20.0)
    assert log.eta(90) == "?"
    log.close()
