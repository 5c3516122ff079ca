"""``segflow bench --profile``: a py-spy sampling profile of a worker during its throughput window."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from engine.ops.bench.measure import BenchError

RATE_HZ = 100


def py_spy() -> str:
    """The py-spy executable (next to this interpreter, else on PATH); BenchError when missing."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise BenchError("--profile needs py-spy: pip install py-spy")
    return found


class Profiler:
    """``py-spy record`` of one process, written as a speedscope JSON file when stopped."""

    def __init__(self, pid: int, output: Path) -> None:
        self.pid = pid
        self.output = output
        self._process: subprocess.Popen[bytes] | None = None
        self._log = output.with_suffix(".log")

    def start(self) -> None:
        """Attach to the process and start sampling (non-blocking: the target is never paused)."""
        self.output.parent.mkdir(parents=True, exist_ok=True)
        command = [py_spy(), "record", "--pid", str(self.pid), "--format", "speedscope"]
        command += ["--output", str(self.output), "--rate", str(RATE_HZ), "--nonblocking"]
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        """Whether py-spy is still sampling."""
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """Stop py-spy without waiting for a profile (the run failed)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout: float = 30.0) -> Path:
        """Stop sampling and write the profile; return its path (BenchError when none was written)."""
        process = self._process
        if process is None:
            raise BenchError("the profiler was never started")
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not self.output.exists():
            tail = (
                self._log.read_text(errors="replace").strip().splitlines()[-1:] if self._log.exists() else []
            )
            raise BenchError(f"py-spy wrote no profile ({' '.join(tail) or 'no output'}); see {self._log}")
        return self.output


def top_frames(path: Path, count: int = 8) -> dict[str, object]:
    """Samples, seconds sampled, and the functions most often on top of the stack (self time, %)."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    leaves: Counter[str] = Counter()
    samples, seconds = 0, 0.0
    for profile in data["profiles"]:
        weights = profile.get("weights") or [1 / RATE_HZ] * len(profile["samples"])
        for stack, weight in zip(profile["samples"], weights, strict=False):
            if stack:
                frame = frames[stack[-1]]
                leaves[f"{frame['name']} ({Path(frame.get('file') or '?').name})"] += weight
                samples += 1
                seconds += weight
    top = [
        {"function": name, "self_pct": round(100 * weight / seconds, 1)}
        for name, weight in leaves.most_common(count)
        if seconds > 0
    ]
    return {"samples": samples, "seconds": round(seconds, 2), "top_self": top}
