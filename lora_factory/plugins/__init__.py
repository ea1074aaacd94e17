"""Built-in modality plugins; each is an ordinary pluggy plugin, registered like a third party's."""
