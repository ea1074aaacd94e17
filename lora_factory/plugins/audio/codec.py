"""Neural speech codecs behind one small interface, so the codec LM does not care which one it uses.

A codec turns a waveform into a sequence of integer codes (``encode``) and back (``decode``). The
codec LM (Llasa layout) is trained on those codes; adding a codec (Mimi for CSM, ...) means adding a
class here and a branch in :func:`load_codec`, nothing else.

XCodec2 (transformers ``Xcodec2Model``): 16 kHz, one codebook (FSQ), 50 codes per second.
Its own feature extractor needs torchaudio, which does not import next to a CPU torch, so the
semantic features come from ``SeamlessM4TFeatureExtractor`` (numpy; what the original Llasa code
used): the same 80-bin log-mel fbank, stacked two frames at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from lora_factory.plugins.audio.audio_io import resample

CODEC_SUBFOLDER = "codec"


class SpeechCodec(Protocol):
    sample_rate: int
    frame_rate: float
    codebook_size: int
    name: str

    def encode(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """Mono float waveform at ``sr`` -> 1-D int64 codes."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """1-D codes -> mono float32 waveform at ``sample_rate``."""


class XCodec2Codec:
    """transformers' Xcodec2Model with numpy features (no torchaudio)."""

    name = "xcodec2"

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        from transformers import SeamlessM4TFeatureExtractor, Xcodec2Model

        self.device = device
        # float32 always: the decoder ends in an inverse STFT; only the LM runs in half precision
        self.model = Xcodec2Model.from_pretrained(str(folder)).to(device).eval()
        config = self.model.config
        self.sample_rate = int(config.sampling_rate)
        self.hop_length = int(config.hop_length)
        self.frame_rate = self.sample_rate / self.hop_length
        self.codebook_size = int(np.prod(config.quantization_levels))
        self.features = SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, stride=2,
                                                    sampling_rate=self.sample_rate, padding_value=1.0)

    def encode(self, wave: np.ndarray, sr: int) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        wave = resample(np.asarray(wave, dtype=np.float32), sr, self.sample_rate)
        tensor = torch.from_numpy(wave)
        tensor = F.pad(tensor, (0, self.hop_length - tensor.shape[0] % self.hop_length))
        half = self.hop_length // 2
        feats = self.features(F.pad(tensor, (half, half)).numpy(), sampling_rate=self.sample_rate,
                              return_tensors="pt").input_features
        with torch.inference_mode():
            out = self.model.encode(input_values=tensor[None, None].to(self.device),
                                    input_features=feats.to(self.device))
        codes = out.audio_codes[0, 0].to("cpu").long().numpy()
        frames = tensor.shape[0] // self.hop_length
        return codes[:frames]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        import torch

        if len(codes) == 0:
            return np.zeros(0, dtype=np.float32)
        tensor = torch.as_tensor(np.asarray(codes, dtype=np.int64), device=self.device)[None, None]
        with torch.inference_mode():
            audio = self.model.decode(audio_codes=tensor).audio_values
        return audio[0, 0].float().to("cpu").numpy().astype(np.float32)


def codec_folder_of(model_dir: Path, override: Path | None = None) -> Path:
    """Where the codec of a TTS model lies: an explicit folder, else ``<model>/codec/``."""
    folder = override or model_dir / CODEC_SUBFOLDER
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no codec in {folder} (expected an XCodec2 model folder with config.json)")
    return folder


def codec_type(folder: Path) -> str:
    return str(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", ""))


def load_codec(folder: Path, device: str = "cpu") -> SpeechCodec:
    kind = codec_type(folder)
    if kind == "xcodec2":
        return XCodec2Codec(folder, device=device)
    raise ValueError(f"unsupported codec model_type {kind!r} in {folder} (supported: xcodec2)")
