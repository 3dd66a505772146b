"""Where training measurements go: WORKDIR/metrics.jsonl, TensorBoard, and a progress line.

Only process 0 writes; on other processes the writer is silent, so callers need no branches.
TensorBoard is optional: it is imported lazily (TensorFlow is slow to import and must not take
the accelerators, so its GPUs are hidden first) and, when TensorFlow is missing, the run goes
on with metrics.jsonl alone and says so once.
"""
from __future__ import annotations

import json
import logging
import math
import pathlib
import time

import numpy as np

log = logging.getLogger("diffrestore.train")

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class _TensorBoard:
    """tf.summary event files (scalars, audio, images)."""

    def __init__(self, tf, log_dir):
        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(log_dir))

    def scalar(self, tag, value, step):
        with self._writer.as_default():
            self._tf.summary.scalar(tag, float(value), step=int(step))

    def audio(self, tag, wave, step, sample_rate):
        data = np.clip(np.asarray(wave, np.float32), -1.0, 1.0)[None, :, None]  # (k, frames, channels)
        with self._writer.as_default():
            self._tf.summary.audio(tag, data, int(sample_rate), step=int(step), max_outputs=1, encoding="wav")

    def image(self, tag, image, step):
        image = np.asarray(image)
        image = image[None] if image.ndim == 3 else image[None, :, :, None]
        with self._writer.as_default():
            self._tf.summary.image(tag, image, step=int(step), max_outputs=1)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


def _tensorboard_writer(log_dir):
    try:
        import tensorboard  # noqa: F401  (tf.summary.scalar & co. live in the tensorboard package)
        import tensorflow as tf
    except ImportError as e:
        log.warning("TensorBoard summaries are off (%s); metrics.jsonl is still written. "
                    "`pip install tensorflow-cpu tensorboard` to have them.", e)
        return None
    try:
        tf.config.set_visible_devices([], "GPU")  # TF must not take accelerator memory from JAX
    except RuntimeError:
        pass  # TF was initialised before; its devices can no longer change
    return _TensorBoard(tf, log_dir)


class MetricWriter:
    """Writes scalars (JSON lines + TensorBoard), audio and images (TensorBoard) on process 0."""

    def __init__(self, workdir, *, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.workdir = pathlib.Path(workdir)
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            self._tb = _tensorboard_writer(self.workdir / TENSORBOARD_DIR)

    @property
    def has_tensorboard(self) -> bool:
        return self._tb is not None

    def truncate_after(self, step: int) -> None:
        """Drops metrics.jsonl lines of steps after `step` (a run restarting from an earlier
        checkpoint re-does them, and the file should say each step once)."""
        if not self.enabled:
            return
        path = self.workdir / METRICS_FILE
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line from a killed process
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)

    def write_scalars(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step)}
        for key, value in scalars.items():
            value = float(value)
            record[key] = value if math.isfinite(value) else str(value)  # JSON has no NaN/inf
        if self._jsonl is None:
            self._jsonl = open(self.workdir / METRICS_FILE, "a")
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.scalar(key, value, step)

    def write_audio(self, step: int, tag: str, wave, sample_rate: int) -> None:
        if self._tb is not None:
            self._tb.audio(tag, wave, step, sample_rate)

    def write_image(self, step: int, tag: str, image) -> None:
        if self._tb is not None:
            self._tb.image(tag, image, step)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class Progress:
    """Steps per second since the last report and an ETA, for the progress line."""

    def __init__(self, first_step: int, num_steps: int):
        self.num_steps = num_steps
        self._last_step = first_step
        self._last_time = time.perf_counter()
        self.last_rate = float("nan")

    def restart_clock(self, step: int) -> None:
        """Starts measuring from `step` (e.g. after the first step, which includes compilation)."""
        self._last_step = step
        self._last_time = time.perf_counter()

    def update(self, step: int) -> dict:
        now = time.perf_counter()
        steps = step - self._last_step
        rate = steps / (now - self._last_time) if steps > 0 and now > self._last_time else float("nan")
        self._last_step, self._last_time = step, now
        self.last_rate = rate
        remaining = self.num_steps - step
        eta = remaining / rate if rate == rate and rate > 0 else float("nan")
        return {"steps_per_sec": rate, "eta_seconds": eta}


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
