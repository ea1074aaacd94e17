"""Tiny random-weight audio models, built offline in seconds from configs.

- TTS (Llasa layout): a 2-layer Llama over a byte-level BPE trained here on kana and common kanji,
  the Llasa markers and ``<|s_0|>`` ... ``<|s_255|>``; its codec in ``codec/``: a tiny XCodec2 with a
  4^4 = 256-code FSQ codebook (the real one has 4^8 = 65,536), same classes, same code paths.
- ASR: a tiny Whisper with its feature extractor, tokenizer (Japanese / English language tokens,
  timestamp tokens) and generation config, loadable with ``WhisperForConditionalGeneration`` and
  ``WhisperProcessor``.

Both say nothing meaningful until trained; they exist so every workflow runs without a hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.plugins.audio.codec import CODEC_SUBFOLDER
from lora_factory.plugins.audio.llasa import LLASA_SPECIALS, speech_token

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
EOT = "<|eot_id|>"
HEADER_START = "<|start_header_id|>"
HEADER_END = "<|end_header_id|>"
PAD = "<|finetune_right_pad_id|>"
TINY_LEVELS = [4, 4, 4, 4]
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

_KANA = ("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
         "がぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽゃゅょっー")
_KANJI = ("日本語今天気私名前東京山川人大小中上下年月時分円本何行来見言話読書食飲買売雨雪風花音声楽歌"
          "学生先会社電車駅道家手目口耳心思知新古高安長短白黒赤青朝昼夜春夏秋冬水火木金土")
_CORPUS = [
    "こんにちは。今日はいい天気ですね。", "私の名前はロラです。よろしくお願いします。",
    "東京は日本の首都です。富士山は高い山です。", "ありがとうございます。どういたしまして。",
    "音声合成のデータを作ります。", "雨が降っています。明日は晴れるでしょう。",
    "せんひゃくえんです。にせんにじゅうよねんさんがつ。", "Convert the text to speech:",
    "Speaker Hello, how are you today?", _KANA, _KANA[::-1], _KANJI, _KANJI[::-1],
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン",
    "0123456789 !?.,:;、。！？「」",
]


def _katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def build_tts_tokenizer(codebook_size: int, vocab_size: int = 640) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [BOS, EOS, HEADER_START, HEADER_END, EOT, PAD, *LLASA_SPECIALS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = _CORPUS + [_katakana(c) for c in _CORPUS] + list(_KANJI) + list(_KANA)
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOT, pad_token=PAD,
                                   clean_up_tokenization_spaces=False)
    fast.add_special_tokens({"additional_special_tokens": LLASA_SPECIALS})
    fast.add_tokens([speech_token(i) for i in range(codebook_size)])
    fast.chat_template = LLAMA3_TEMPLATE
    return fast


def build_tiny_codec(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    import torch
    from transformers import SeamlessM4TFeatureExtractor, Xcodec2Config, Xcodec2Model

    semantic = {"model_type": "wav2vec2-bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 128, "feature_projection_input_dim": 160, "output_hidden_size": 64}
    config = Xcodec2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, head_dim=32, encoder_hidden_size=8, quantization_dim=128,
                           quantization_levels=TINY_LEVELS, semantic_model_config=semantic)
    torch.manual_seed(seed)
    model = Xcodec2Model(config).eval()
    with torch.no_grad():
        # random projections land every frame on the same code; spread them like a trained codec's
        model.quantizer.project_in.weight.mul_(200.0)
    model.save_pretrained(out_dir, safe_serialization=True)
    SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, stride=2, sampling_rate=16000,
                                padding_value=1.0).save_pretrained(out_dir)
    return {"parameters": int(sum(p.numel() for p in model.parameters())), "codebook_size": 4 ** len(TINY_LEVELS)}


def build_tiny_tts_model(out_dir: Path, seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> dict[str, Any]:
    """A random Llasa-layout LM in ``out_dir`` and its tiny XCodec2 in ``out_dir/codec``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = build_tiny_codec(out_dir / CODEC_SUBFOLDER, seed=seed)
    tokenizer = build_tts_tokenizer(codec["codebook_size"])
    heads = max(1, hidden_size // 16)
    end_id = tokenizer.convert_tokens_to_ids("<|SPEECH_GENERATION_END|>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=num_layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=end_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.15)  # logits with a trained model's spread (see the text plugin)
    model.generation_config.eos_token_id = end_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    parameters = int(sum(p.numel() for p in model.parameters()))
    (out_dir / "README.md").write_text(
        "# Tiny random TTS model (LoRA Factory, Llasa layout)\n\n"
        "重みがランダムな動作確認用の音声合成モデルです。学習前の出力は雑音です。\n\n"
        "RANDOM weights: a Llama LM over XCodec2 codes (`<|s_N|>` tokens) and a tiny XCodec2 in `codec/`, "
        "so the whole voice workflow runs offline. It speaks noise until a LoRA teaches it something.\n\n"
        f"- LM: LlamaForCausalLM, {parameters} parameters, vocab {len(tokenizer)}\n"
        f"- codec: Xcodec2Model, {codec['parameters']} parameters, {codec['codebook_size']} codes, 16 kHz, 50 Hz\n"
        f"- seed: {seed}\n", encoding="utf-8")
    return {"path": str(out_dir), "parameters": parameters, "architecture": "LlamaForCausalLM",
            "family": "llasa", "codec": "xcodec2", "codebook_size": codec["codebook_size"]}


# ---- Whisper ----

WHISPER_LANGUAGES = ["en", "ja", "zh"]
WHISPER_SPECIALS_AFTER_LANGS = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                                "<|nocaptions|>", "<|notimestamps|>"]


def build_whisper_tokenizer(vocab_size: int = 700) -> Any:
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # no special tokens in the BPE: Whisper expects every special id above the text vocabulary
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = _CORPUS + [_katakana(c) for c in _CORPUS] + list(_KANJI)
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    whisper = WhisperTokenizer(vocab=model["vocab"], merges=merges)
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{code}|>" for code in WHISPER_LANGUAGES], *WHISPER_SPECIALS_AFTER_LANGS]
    whisper.add_special_tokens({"additional_special_tokens": specials})
    # timestamp tokens follow the specials (Whisper finds them as "last special id + 1")
    whisper.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(1501)])
    return whisper


def build_tiny_whisper(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_whisper_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=448,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=ids("<|startoftranscript|>"))
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        lang_to_id={f"<|{c}|>": ids(f"<|{c}|>") for c in WHISPER_LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=True, max_initial_timestamp_index=50, max_length=448, begin_suppress_tokens=[eot],
        suppress_tokens=[])
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out_dir)
    parameters = int(sum(p.numel() for p in model.parameters()))
    (out_dir / "README.md").write_text(
        "# Tiny random Whisper (LoRA Factory)\n\n重みがランダムな動作確認用の音声認識モデルです。\n\n"
        "RANDOM weights: the transcription is gibberish until trained. It exists so the dataset builder "
        f"(transcribe) and Whisper LoRA run offline.\n\n- parameters: {parameters}\n- vocab: {len(tokenizer)}\n",
        encoding="utf-8")
    return {"path": str(out_dir), "parameters": parameters, "architecture": "WhisperForConditionalGeneration",
            "family": "whisper"}
