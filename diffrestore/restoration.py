"""Zero-shot restoration tasks: what was done to a recording, as an operator and guidance settings.

A task turns the user's description of a degradation ("low-passed at 4 kHz by a 6th-order
Chebyshev filter", "clipped", "these gaps are missing") into
- an operator A (`diffrestore.operators`) at the prior's sample rate, whose parameters may be
  per row (a clip level per signal, the slice of a gap mask that a chunk covers);
- the guidance of the posterior sampler (`sampling.guided_denoiser`): ξ, gradient clipping and
  data consistency, with the defaults of CQT-Diff's scripts (eloimoliner/CQTdiff
  `scripts/sampling_*.sh`, `conf/conf.yaml`): T = 35, S_churn 5, σ 1e-4 … 1, ρ 13, and

  | task | operator | ξ | clip ∇ | data consistency |
  | --- | --- | ---: | ---: | --- |
  | bwe, filter fir (firwin, 500 taps) | `lowpass_fir` | 0.2 | 1 | no |
  | bwe, filter cheby1 (order 6, 0.05 dB) | `lowpass_cheby1` | 0.2 | 1 | no |
  | bwe, filter biquad (Q 0.707) | `lowpass_biquad` | 0.35 | 1 | no |
  | declip | `clip` | 0.2 | 0 | no |
  | inpaint | `mask` of the gaps | 0.2 | 0 | yes |

  (the BWE scripts leave `max_thresh_grads` at conf.yaml's 1; declipping and inpainting set 0).

The observation is the recording itself: restoration finds x with A(x) ≈ y. For declipping
the clip level defaults to the recording's peak (where a clipped recording saturates).
`degrade(clean, task, ...)` applies the same operator to clean audio, for experiments.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from diffrestore import operators

TASKS = ("bwe", "declip", "inpaint")
FILTERS = ("fir", "cheby1", "biquad")
_XI = {"fir": 0.2, "cheby1": 0.2, "biquad": 0.35, "declip": 0.2, "inpaint": 0.2}


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A restoration task at the prior's rate.

    Attributes:
      name: "bwe", "declip" or "inpaint"; description: for logs and reports.
      operator: the degradation A (its default parameters are the task's shared ones).
      per_signal: "level" (declip: a clip level per signal), "mask" (inpaint: a sample mask
        per signal, sliced like the signal) or None.
      xi, clip_grad, data_consistency, guidance: `sampling.guided_denoiser`'s options.
      options: what the user gave, validated (for the program cache key and reports).
    """

    name: str
    description: str
    operator: Any
    per_signal: str | None
    xi: float
    clip_grad: float
    data_consistency: bool
    guidance: str
    options: tuple

    def signal_params(self, waves: Sequence[np.ndarray], sample_rate: int, gaps_of=None) -> list:
        """Per-signal parameters at the prior's rate: clip levels or masks (None otherwise)."""
        if self.per_signal == "level":
            level = dict(self.options).get("clip_level")
            return [float(level) if level is not None else float(np.max(np.abs(w))) for w in waves]
        if self.per_signal == "mask":
            return [gap_mask(len(w), gaps_of(i) if gaps_of else dict(self.options)["gaps"], sample_rate)
                    for i, w in enumerate(waves)]
        return [None] * len(waves)


def make_task(task: str, sample_rate: int, *, cutoff_hz=None, filter: str = "fir", numtaps: int = 500,
              order: int = 6, ripple: float = 0.05, q: float = 0.707, clip_level=None, gaps=None,
              xi=None, clip_grad=None, data_consistency=None, guidance: str = "reconstruction") -> Task:
    """The task `task` at the prior's `sample_rate` with the user's options.

    Args:
      task: "bwe" (cutoff_hz; filter fir|cheby1|biquad with numtaps / order, ripple / q),
        "declip" (clip_level, default each signal's peak), "inpaint" (gaps: [(start_s, end_s), ...]).
      xi, clip_grad, data_consistency, guidance: override the task's defaults (table above).

    Raises:
      ValueError: an unknown task or filter, a cutoff outside (0, Nyquist), a bad clip level
        or gap.
    """
    nyquist = sample_rate / 2
    if task == "bwe":
        if filter not in FILTERS:
            raise ValueError(f"unknown filter {filter!r}; choose from {FILTERS}")
        if cutoff_hz is None or not 0 < float(cutoff_hz) < nyquist:
            raise ValueError(f"bwe needs a cutoff between 0 and the prior's Nyquist frequency {nyquist:g} Hz, got {cutoff_hz}")
        cutoff = float(cutoff_hz)
        if filter == "fir":
            op = operators.get_operator("lowpass_fir", cutoff=cutoff, sample_rate=float(sample_rate), numtaps=int(numtaps))
            what = f"firwin {int(numtaps)} taps"
        elif filter == "cheby1":
            op = operators.get_operator("lowpass_cheby1", cutoff=cutoff, sample_rate=float(sample_rate), order=int(order),
                                        ripple=float(ripple))
            what = f"Chebyshev I order {int(order)}, {ripple:g} dB"
        else:
            op = operators.get_operator("lowpass_biquad", cutoff=cutoff, sample_rate=float(sample_rate), Q=float(q))
            what = f"biquad Q {q:g}"
        description = f"bandwidth extension above {cutoff:g} Hz ({what})"
        defaults = (_XI[filter], 1.0, False)
        per_signal = None
        options = dict(cutoff_hz=cutoff, filter=filter, numtaps=int(numtaps), order=int(order), ripple=float(ripple), q=float(q))
    elif task == "declip":
        if clip_level is not None and not float(clip_level) > 0:
            raise ValueError(f"clip_level must be positive, got {clip_level}")
        op = operators.get_operator("clip", level=1.0)  # the level is a per-signal parameter
        description = "declipping" + (f" at {float(clip_level):g}" if clip_level is not None else " at each signal's peak")
        defaults = (_XI["declip"], 0.0, False)
        per_signal = "level"
        options = dict(clip_level=None if clip_level is None else float(clip_level))
    elif task == "inpaint":
        if not gaps:
            raise ValueError("inpaint needs gaps: [(start_s, end_s), ...]")
        gaps = tuple((float(a), float(b)) for a, b in gaps)
        for a, b in gaps:
            if not 0 <= a < b:
                raise ValueError(f"a gap must be (start_s, end_s) with 0 <= start < end, got ({a}, {b})")
        op = operators.get_operator("mask", mask=np.ones(8, np.float32))  # the mask is a per-signal parameter
        description = f"inpainting {len(gaps)} gap(s)"
        defaults = (_XI["inpaint"], 0.0, True)
        per_signal = "mask"
        options = dict(gaps=gaps)
    else:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    xi = defaults[0] if xi is None else float(xi)
    clip_grad = defaults[1] if clip_grad is None else float(clip_grad)
    data_consistency = defaults[2] if data_consistency is None else bool(data_consistency)
    if xi <= 0 and not data_consistency:
        raise ValueError(f"xi must be positive (got {xi}) unless data consistency is on")
    return Task(task, description, op, per_signal, xi, clip_grad, data_consistency,
                guidance if xi > 0 else "none", tuple(sorted(options.items())))


def gap_mask(length: int, gaps, sample_rate: int) -> np.ndarray:
    """1 where a signal of `length` samples was observed, 0 inside the gaps (seconds).

    A gap (start, end) holds the samples n with start <= n / sample_rate < end (to 1e-9 of a
    sample, so that 0.1 s at 22.05 kHz starts at sample 2205, not 2206).

    Raises:
      ValueError: a gap that starts beyond the signal's end.
    """
    mask = np.ones(length, np.float32)
    seconds = length / sample_rate
    for start, end in gaps:
        a, b = (int(math.ceil(t * sample_rate - 1e-9)) for t in (start, end))
        if a >= length:
            raise ValueError(f"gap ({start:g} s, {end:g} s) starts after the signal's end ({seconds:.3f} s)")
        mask[a:min(b, length)] = 0.0
    return mask


def degrade(clean: np.ndarray, task: Task, sample_rate: int, *, clip_sdr_db=None) -> np.ndarray:
    """A(clean) for experiments: the observation a task restores from (1-D float32 at the prior's rate).

    clip_sdr_db: for declipping, clip at the level that gives this SDR (CQT-Diff's
    `get_clip_value_from_SDR`) instead of the task's level.
    """
    import jax.numpy as jnp

    clean = np.asarray(clean, np.float32)
    if task.per_signal == "level":
        level = (operators.clip_level_for_sdr(clean, clip_sdr_db) if clip_sdr_db is not None
                 else task.signal_params([clean], sample_rate)[0])
        return np.asarray(task.operator.apply(clean, {"level": jnp.asarray(level, jnp.float32)}))
    if task.per_signal == "mask":
        mask = task.signal_params([clean], sample_rate)[0]
        return np.asarray(task.operator.apply(clean, {"mask": jnp.asarray(mask)}))
    return np.asarray(task.operator.apply(clean[None]))[0]
