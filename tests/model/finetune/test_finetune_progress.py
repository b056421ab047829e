"""Fine-tuning says where it is: which run of the grid and seeds, and how long is left, in the
run and in the whole grid (three silent minutes were seen before)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from test_finetune_training import finetune, sst2_dir  # noqa: F401  (a fixture)


def test_grid_runs_are_numbered_and_steps_carry_an_eta(
    tiny_checkpoint: Path,
    sst2_dir: Path,  # noqa: F811
    tmp_path: Path,
    caplog,
):
    caplog.set_level(logging.INFO, logger="model.finetune")
    finetune(
        sst2_dir,
        tiny_checkpoint,
        tmp_path / "out",
        "--grid",
        "lr=1e-3,2e-3 batch=16 epochs=1",
        "--seeds",
        "0,1",
    )
    messages = [r.getMessage() for r in caplog.records]
    runs = [m for m in messages if re.search(r": run \d of 4 \(grid x seeds\)", m)]
    assert [re.search(r"run (\d) of", m).group(1) for m in runs] == ["1", "2", "3", "4"]
    assert runs[0].endswith("eta ?") and re.search(r"eta \d+:\d\d:\d\d$", runs[-1])
    steps = [m for m in messages if re.match(r"epoch 1 step \d+/15 ", m)]
    assert steps and all(re.search(r"steps/s \| eta \d+:\d\d:\d\d$", m) for m in steps)
    assert any(m.startswith("epoch 1 step 15/15 ") and m.endswith("eta 0:00:00") for m in steps)
