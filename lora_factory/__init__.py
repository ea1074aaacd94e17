"""LoRA Factory: a local workbench to fine-tune LoRA adapters for text, image and audio models."""

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.plugin_host.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["LoRAFactoryError", "hookimpl", "__version__"]
