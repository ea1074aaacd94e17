"""What a transcription request may set, and the check that a speech request has something to say.

Why here and not in the worker: a bad value (``max_new_tokens`` -5, ``language`` "klingon", a
300,000-character prompt) is a 422 naming the parameter before any model loads, not a 500 from
inside Whisper.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lora_factory.kit import LoRAFactoryError

# Whisper's language codes (openai/whisper tokenizer.LANGUAGES), and the English names it accepts too
WHISPER_LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt la mi "
    "ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd "
    "gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue").split()
LANGUAGE_NAMES = (
    "english chinese german spanish russian korean french japanese portuguese turkish polish catalan dutch arabic "
    "swedish italian indonesian hindi finnish vietnamese hebrew ukrainian greek malay czech romanian danish "
    "hungarian tamil norwegian thai urdu croatian bulgarian lithuanian latin maori malayalam welsh slovak telugu "
    "persian latvian bengali serbian azerbaijani slovenian kannada estonian macedonian breton basque icelandic "
    "armenian nepali mongolian bosnian kazakh albanian swahili galician marathi punjabi sinhala khmer shona "
    "yoruba somali afrikaans occitan georgian belarusian tajik sindhi gujarati amharic yiddish lao uzbek faroese "
    "pashto turkmen nynorsk maltese sanskrit luxembourgish myanmar tibetan tagalog malagasy assamese tatar "
    "hawaiian lingala hausa bashkir javanese sundanese cantonese").split()


class TranscribeParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    language: str | None = Field("ja", max_length=32)
    prompt: str | None = Field("", max_length=2000, description="words to expect (names, terms)")
    timestamps: bool = True
    max_new_tokens: int | None = Field(None, ge=1, le=448, description="Whisper's decoder holds 448 tokens")

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value in (None, "", "auto"):
            return value
        if value.lower() not in WHISPER_LANGUAGES and value.lower() not in LANGUAGE_NAMES:
            raise ValueError(f"unknown language '{value}' (a Whisper language code such as ja, en, zh)")
        return value


def check_speakable(text: Any) -> None:
    """Speech needs at least one letter or digit: "♪", "😀", "|" or "()" alone leave nothing to say."""
    if not isinstance(text, str) or not any(ch.isalnum() for ch in text):
        raise LoRAFactoryError("INFER_INVALID_INPUT", "読み上げる文字がありません。文字か数字を含む文章を入力してください。",
                               "There is nothing to read aloud; give text with letters or digits.", 422,
                               detail={"field": "input.text"})
