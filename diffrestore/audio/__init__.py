"""Signal transforms: STFT/iSTFT and the complex spectrogram compressions of SGMSE."""
from diffrestore.audio.stft import hann_window, istft, num_frames, stft
from diffrestore.audio.transforms import (
    SpectrogramConfig,
    PRESETS,
    spec_backward,
    spec_forward,
    to_audio,
    to_spectrogram,
    pad_frames,
)

__all__ = [
    "hann_window", "stft", "istft", "num_frames",
    "SpectrogramConfig", "PRESETS", "spec_forward", "spec_backward",
    "to_spectrogram", "to_audio", "pad_frames",
]
