"""Japanese text normalisation for speech (offline): rules, the user's dictionary, readings."""

from lora_factory.plugins.audio.text_norm.normalize import LATIN_MODES, NormalizationOptions, normalize_text
from lora_factory.plugins.audio.text_norm.user_dict import DictionaryEntry, UserDictionary

__all__ = ["LATIN_MODES", "DictionaryEntry", "NormalizationOptions", "UserDictionary", "normalize_text"]
