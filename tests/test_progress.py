"""Progress of the actual work: every 10% of GD's steps of all inits (inits in vectors, save
segments of any length), never above 100%, with the time left; the meter restarts per solve."""

import re

from gflow.batch import init_batch, run_batch
from gflow.config import DynamicsConfig
from gflow.models import ufm_ce
from gflow.progress import Meter

LINE = re.compile(r"^gflow: (\d+)% of the steps \([\d.]+ (s|min \d+ s)(, about .+ left)?\)$")


def test_gd_reports_each_tenth_of_all_inits_steps_once(capsys):
    model = ufm_ce(3, 4, 2)
    dynamics = DynamicsConfig(kind="gd", steps=4000, saves=4, lr=0.1)  # log: a long last segment
    for _ in range(2):  # a second solve restarts the meter: never 110% .. 200%
        run_batch(model, dynamics, init_batch(model, 0, 3), progress=True)
        lines = capsys.readouterr().err.splitlines()
        matches = [LINE.match(line) for line in lines]
        assert all(matches), lines
        assert [int(m[1]) for m in matches] == list(range(10, 101, 10))
        assert matches[-1][3] is None and matches[0][3] is not None  # "left" until the end


def test_the_meter_caps_at_its_total_and_ignores_work_it_was_not_told_of(capsys):
    meter = Meter()
    meter.add(5)  # not started: nothing
    meter.start(10, "of the inits solved")
    for _ in range(15):
        meter.add(1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("gflow: 100% of the inits solved (")


def test_on_a_terminal_the_meter_draws_a_tqdm_bar_to_the_end(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    meter = Meter()
    meter.start(40, "of the steps")
    for _ in range(50):  # more than the total: the bar stops at 40/40
        meter.add(1)
    text = screen.getvalue()
    assert "gflow of the steps" in text and "40/40" in text and "100%" in text
    assert "gflow: 10%" not in text  # the bar replaces the lines
