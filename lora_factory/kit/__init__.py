"""The plugin kit: everything a modality plugin may use from LoRA Factory, in one public place.

Plugins (the built-in text, image and audio ones exactly like a third party's) import from here and
never from ``lora_factory.core`` (nor from the package root): what is here is documented in
``docs/plugins.md`` and kept stable; everything else may move. Importing the kit imports no ML
library; each helper imports torch, transformers or huggingface_hub inside the function that needs it.

    from lora_factory.kit import hookimpl, LoRAFactoryError, JobContext, InferenceSession, Workspace
    from lora_factory.kit import devices, dist, files, hub, loop, media, model_card, presets, refine, trainer
    from lora_factory.kit.testing import FakeJobContext, FakeInferenceSession, temp_workspace  # in tests

``JobContext``, ``InferenceSession`` and ``Workspace`` are the typed faces of the hook arguments
``ctx``, ``session`` and ``workspace`` (protocols: the host's objects and the testing fakes fit them).
``__version__`` is LoRA Factory's version.
"""

from lora_factory import __version__
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.plugin_host.faces import InferenceSession, JobContext, Workspace
from lora_factory.core.plugin_host.hookspecs import hookimpl
from lora_factory.kit import devices, dist, files, hub, loop, media, model_card, presets, refine, trainer

__all__ = ["LoRAFactoryError", "hookimpl", "__version__", "JobContext", "InferenceSession", "Workspace",
           "devices", "dist", "files", "hub", "loop", "media", "model_card", "presets", "refine", "trainer"]
