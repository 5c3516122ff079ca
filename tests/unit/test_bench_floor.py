"""``python -m engine.ops.bench.floor``: the feature step's own CPU per event (no servers)."""

from __future__ import annotations

import pytest

from engine.ops.bench.floor import STAGES, main


def test_prints_every_stage_with_a_median_and_each_repeat(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--events", "300", "--customers", "50", "--repeats", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("300 simulated events")
    for stage, line in zip(STAGES, lines[1:], strict=True):
        assert line.startswith(stage)
        median, runs = line.split("median")[1].split("(")
        assert float(median) > 0
        assert len(runs.rstrip(")").split(",")) == 2


def test_refuses_no_events_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--events", "0"])
    assert exited.value.code == 2
    assert "--events and --repeats must be at least 1" in capsys.readouterr().err
