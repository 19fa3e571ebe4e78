"""Every speech_commands setting, declared once (flags, ``--help``, ranges and ``config.json``).

No TensorFlow, Keras or NumPy here: ``--help`` and flag errors stay instant.
"""

from __future__ import annotations

import dataclasses

from tasks.common.config import EvaluateConfig, ExportConfig, OutputConfig, PredictConfig, TrainConfig, setting
from tasks.common.samples import sample_path

TASK_NAME = "speech_commands"
DEFAULT_MODEL_DIR = "saved_models/speech_commands"
# A 120-clip sample of the Free Spoken Digit Dataset shipped in the package (tasks/samples/speech_commands/,
# see its README); the whole corpus (2,000 clips) is ../shared/data/speech_digits where that folder exists.
SAMPLE_DATA = sample_path("speech_commands/digits")
TFDS_PREFIX = "tfds:"


@dataclasses.dataclass
class DataConfig:
    """Which clips, how they are split and read, and the training augmentation."""

    data: str = setting(
        SAMPLE_DATA,
        "folder of <word>/<speaker>_nohash_<n>.wav (optional _background_noise_/, validation_list.txt, "
        "testing_list.txt), or tfds:speech_commands",
        metavar="DIR",
    )
    tfds_data_dir: str | None = setting(None, "tfds data_dir holding a prepared speech_commands", metavar="DIR")
    test_speakers: list[str] = setting(
        [],
        "speakers held out as the test split (none: the Speech Commands speaker hash; when it places no "
        "speaker in testing, the speaker with the lowest hash is held out)",
        metavar="NAME,...",
    )
    validation_percentage: float = setting(10.0, "speaker-hash share of validation speakers", minimum=0, below=100)
    testing_percentage: float = setting(10.0, "speaker-hash share of test speakers", minimum=0, below=100)
    sample_rate: int = setting(16000, "rate every clip is resampled to (Hz)", minimum=1000)
    clip_seconds: float = setting(1.0, "clip length: shorter clips are padded, longer ones cropped", above=0)
    peak_normalize: bool = setting(True, "scale every clip to peak 1 (quiet and loud speakers alike)")
    time_shift_ms: float = setting(100.0, "augmentation: random time shift up to +-this", minimum=0)
    background_frequency: float = setting(0.8, "augmentation: share of clips with background noise", minimum=0, maximum=1)
    background_volume: float = setting(0.1, "augmentation: noise volume up to this", minimum=0)
    speed_range: float = setting(0.1, "augmentation: speed perturbation, rate in [1-r, 1+r]", minimum=0, below=1)
    gain_range: float = setting(0.3, "augmentation: random gain in [1-g, 1]", minimum=0, maximum=1)
    synthetic_voices: int = setting(
        300,
        "add every word spoken by N randomised espeak-ng voices to the training split (validation and "
        "test stay real; 0: off)",
        minimum=0,
    )
    batch_size: int = setting(32, "clips per batch", minimum=1)
    max_eval_clips: int = setting(4000, "tfds: validation/test clips kept in memory", minimum=1)

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def tfds_name(self) -> str | None:
        """The tfds dataset name when ``data`` is ``tfds:<name>``, else None."""
        return self.data[len(TFDS_PREFIX):] if self.data.startswith(TFDS_PREFIX) else None


@dataclasses.dataclass
class ModelConfig:
    """The in-model log-mel front end, SpecAugment and the LSTM."""

    sample_rate: int = setting(16000, "input rate of the model (from the data config)", cli=False)
    clip_samples: int = setting(16000, "input samples of the clip model (from the data config)", cli=False)
    feature_rate: int = setting(8000, "decimate to this rate before the DFT (= sample rate: none)", minimum=1000)
    frame_ms: float = setting(25.0, "analysis frame length", above=0)
    hop_ms: float = setting(20.0, "frame hop (the streaming model consumes one hop per call)", above=0)
    dft_bin_hz: float = setting(62.5, "spacing of the matrix-DFT bins", above=0)
    num_mel_bins: int = setting(32, "mel bands", minimum=1)
    num_mfcc: int = setting(0, "0: log-mel features; N: the first N MFCCs", minimum=0)
    lower_edge_hertz: float = setting(60.0, "lowest mel band edge", minimum=0)
    upper_edge_hertz: float = setting(3800.0, "highest mel band edge (at most feature_rate / 2)", above=0)
    spectrum: str = setting("magnitude", "magnitude = |re|+|im| (int8-friendly) or power = re^2+im^2",
                            choices=("magnitude", "power"))
    log_offset: float = setting(0.25, "floor added before the log", above=0)
    int8_aware: bool = setting(True, "round the front end's spectrum tensors to the int8 grid in float too")
    fir_taps: int = setting(31, "taps of the decimation low-pass filter", minimum=1)
    feature_norm: str = setting(
        "causal", "causal = also subtract each band's running mean (streaming CMN); global = standardisation only",
        choices=("causal", "global"),
    )
    norm_decay: float = setting(0.8, "running-mean decay per frame for --feature-norm causal", minimum=0, below=1)
    spec_augment: bool = setting(True, "SpecAugment time/frequency masking in training")
    freq_masks: int = setting(2, "SpecAugment frequency masks", minimum=0)
    freq_mask_width: int = setting(4, "SpecAugment: widest frequency mask (bands)", minimum=0)
    time_masks: int = setting(2, "SpecAugment time masks", minimum=0)
    time_mask_width: int = setting(5, "SpecAugment: widest time mask (frames)", minimum=0)
    time_stretch: float = setting(0.4, "tempo augmentation of the frame axis: factor in [1/(1+s), 1+s] (0: off)",
                                  minimum=0)
    units: int = setting(48, "LSTM units", minimum=1)
    dropout: float = setting(0.1, "dropout after the LSTM", minimum=0, below=1)

    @property
    def decimation(self) -> int:
        if self.sample_rate % self.feature_rate:
            raise ValueError(f"sample rate {self.sample_rate} must be a multiple of --feature-rate {self.feature_rate}")
        return self.sample_rate // self.feature_rate

    @property
    def num_features(self) -> int:
        return self.num_mfcc or self.num_mel_bins

    @property
    def hop_samples(self) -> int:
        """Hop in input (``sample_rate``) samples: what the streaming model consumes per call."""
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def num_frames(self) -> int:
        return -(-self.clip_samples // self.hop_samples)


@dataclasses.dataclass
class EvaluateSelection:
    """Which clips of ``--data`` evaluate scores."""

    speakers: list[str] = setting([], "only clips of these speakers (none: all)", metavar="NAME,...")


@dataclasses.dataclass
class ExportChecks:
    """The clips export calibrates and checks the exported models on."""

    data: str | None = setting(
        None, "folder for int8 calibration and the runtime checks (none: the model's training data)", metavar="DIR"
    )
    check_examples: int = setting(200, "held-out clips every runtime is compared on", minimum=1)
    stream_check_examples: int = setting(20, "clips streamed hop by hop through the streaming model", minimum=1)


@dataclasses.dataclass
class PredictOptions:
    top_k: int = setting(3, "words printed per file", minimum=1)


DEFAULT_TRAIN = TrainConfig(epochs=30, learning_rate=3e-3, patience=12, monitor="val_loss")
OUTPUT = OutputConfig(out=DEFAULT_MODEL_DIR)
EVALUATE = EvaluateConfig(model=DEFAULT_MODEL_DIR)
EXPORT = ExportConfig(model=DEFAULT_MODEL_DIR, calibration_examples=300)
PREDICT = PredictConfig(model=DEFAULT_MODEL_DIR)
