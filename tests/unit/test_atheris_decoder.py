"""The coverage-guided fuzzer (``tests/fuzz/fuzz_event_decoder.py``) run with a fixed budget.

libFuzzer exits non-zero when an input breaks an invariant of the harness (an exception out of
the decode step, a reason in no category, the fast path and the validator disagreeing) and
prints that input; ``-seed=1`` makes the run the same every time. ``RUNS`` takes about 12 s here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HARNESS = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_event_decoder.py"
RUNS = 400_000


def test_the_decoder_survives_a_fixed_fuzzing_budget(tmp_path: Path) -> None:
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    artifacts.mkdir()
    subprocess.run([sys.executable, str(HARNESS), "--write-seeds", str(corpus)], check=True)
    assert len(list(corpus.iterdir())) > 0
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={RUNS}",
            "-seed=1",
            "-max_len=4096",
            f"-artifact_prefix={artifacts}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        errors="replace",
    )
    tail = "\n".join(run.stderr.splitlines()[-40:])
    assert run.returncode == 0, f"libFuzzer exited {run.returncode}:\n{tail}"
    assert f"Done {RUNS} runs" in run.stderr, tail
