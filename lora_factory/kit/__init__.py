"""The plugin kit: everything a modality plugin may use from LoRA Factory, in one public place.

Plugins (the built-in text, image and audio ones exactly like a third party's) import from here and
never from ``lora_factory.core``: what is here is documented in ``docs/plugins.md`` and kept stable;
everything else may move. Importing the kit imports no ML library; each helper imports torch,
transformers or huggingface_hub inside the function that needs it.

    from lora_factory.kit import hookimpl, LoRAFactoryError
    from lora_factory.kit import devices, files, hub, loop, media, model_card, presets, refine, trainer
"""

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.plugin_host.hookspecs import hookimpl
from lora_factory.kit import devices, files, hub, loop, media, model_card, presets, refine, trainer

__all__ = ["LoRAFactoryError", "hookimpl", "devices", "files", "hub", "loop", "media", "model_card", "presets", "refine",
           "trainer"]
