"""The `data` group of a training config, apart from the code that reads data.

Loading a config (training, benchmarks, a checkpoint's config.json) needs these defaults but
none of the audio I/O or TensorFlow behind `diffrestore.data.pipeline`, so they live here
with ml_collections as their only import.
"""
from __future__ import annotations

import ml_collections


def default_data_config() -> ml_collections.ConfigDict:
    """The `data` group of a training config with the reference's defaults (VoiceBank-style
    paired folders at 16 kHz, 256-frame crops of a 510-point STFT with hop 128)."""
    c = ml_collections.ConfigDict()
    c.dataset = "folder"  # folder | synthetic | mix | tfds | clean
    c.data_dir = ""  # folder/synthetic: corpus root with train/valid/test; mix: clean speech; clean: clean audio (train/ valid/ or flat)
    c.layout = "default"  # default (clean, noisy) | reverb (clean|anechoic, reverb) | ears (noisy `_<snr>dB` names)
    c.sample_rate = 16000  # Hz; paired files at another rate are an error; dataset="clean" resamples them
    c.n_fft = 510
    c.hop_length = 128
    c.num_frames = 256  # crop = (num_frames - 1) * hop_length samples (2.04 s at 16 kHz) ...
    c.segment_length = 0  # ... unless this is > 0: then the crop is this many samples (CQT-Diff 65536, CQTdiff+ 184184 at 22.05 kHz)
    c.normalize = "noisy"  # divide clean and noisy by the peak of: noisy | clean | none; dataset="clean": none (CQT-Diff, BABE) | clean
    c.short_files = "skip"  # dataset="clean": files shorter than a crop are skipped (as CQT-Diff, BABE) | pad (centred in zeros)
    c.file_order = "epoch"  # epoch: every file once per epoch; uniform: files drawn with replacement
    # On-the-fly mixing (dataset="mix").
    c.noise_dir = ""
    c.rir_dir = ""  # room impulse responses; "" = no reverberation
    c.snr_db = (-5.0, 20.0)  # SNR drawn uniformly from [low, high] dB
    c.rir_probability = 1.0  # fraction of examples reverberated when rir_dir is set
    c.rir_max_seconds = 1.0  # impulse responses are cut after this long
    c.mix_target = "dry"  # dry: dereverberate + denoise; reverberant: denoise only
    # A prepared TFDS dataset (dataset="tfds"), e.g. built by diffrestore.data.tfds_builders.
    c.tfds_name = "voicebank_demand/16k"
    c.tfds_data_dir = ""  # "" = TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR)
    # Input performance.
    c.preload_max_mb = 4096.0  # corpora up to this size are read into memory once; larger ones are read per crop
    c.num_workers = 0  # parallel map calls; 0 = tf.data autotune
    c.prefetch_batches = 2
    return c


def crop_length(data_config) -> int:
    """Samples per training crop: `segment_length` when it is > 0 (the waveform priors' fixed
    segments), else (num_frames - 1) * hop_length, the length whose centred STFT has exactly
    num_frames frames."""
    # getattr with a default: configs saved before the field existed do not have it.
    segment = int(getattr(data_config, "segment_length", 0) or 0)
    if segment > 0:
        return segment
    return (int(data_config.num_frames) - 1) * int(data_config.hop_length)
