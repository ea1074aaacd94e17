"""The transformers Trainer with its per-step bookkeeping done over the LoRA parameters only.

Why: after every optimizer step the Trainer walks the whole module tree of the model three times
in Python: to count FLOPs (``num_parameters``), to clip the gradient norm (``model.parameters()``)
and to clear gradients (``model.zero_grad()``). A LoRA model has many more modules than trainable
parameters (peft adds a ModuleDict, a dropout and two Linear per adapted layer), so on the tiny
model these walks cost about 1 ms a step, 5 % of the step; on a 24-layer model about 10 ms, which
a GPU spends waiting for the CPU. The frozen parameters never get a gradient and the parameter
count never changes during a run, so none of the three walks is needed:

- FLOPs: ``6 x tokens x parameters`` with the parameter count taken once (same ``total_flos``);
- clipping: the norm over the trainable parameters, which are the only ones with a gradient
  (the same norm), handed to the same ``accelerator.clip_grad_norm_``;
- zeroing: ``grad = None`` on the trainable parameters (what ``zero_grad()`` does to them).

Each override falls back to the Trainer's own code where it does not apply (distributed or mixed
device-mesh training), and an override the Trainer no longer calls simply has no effect.
"""

from __future__ import annotations

from typing import Any


def lean_trainer_class() -> Any:
    """A ``transformers.Trainer`` subclass (built on demand: this module imports no torch)."""
    from transformers import Trainer

    class LeanTrainer(Trainer):
        _trainable: list[Any] | None = None
        _parameter_count: int | None = None

        def _trainable_parameters(self, model: Any) -> list[Any] | None:
            from accelerate.utils import DistributedType

            if self.accelerator.distributed_type != DistributedType.NO:
                return None
            if self._trainable is None:
                self._trainable = [p for p in model.parameters() if p.requires_grad]
            return self._trainable

        def floating_point_ops(self, inputs: dict[str, Any]) -> int:
            main_input = getattr(self.model, "main_input_name", "input_ids")
            if main_input not in inputs or not hasattr(self.model, "num_parameters"):
                return 0
            if self._parameter_count is None:
                self._parameter_count = int(self.model.num_parameters(exclude_embeddings=True))
            return 6 * inputs[main_input].numel() * self._parameter_count

        def _clip_grad_norm(self, model: Any) -> Any:
            params = self._trainable_parameters(model)
            if params is None or self._has_mixed_mesh_grads(model):
                return super()._clip_grad_norm(model)
            return self.accelerator.clip_grad_norm_(params, self.args.max_grad_norm)

        def train(self, *args: Any, **kwargs: Any) -> Any:
            import torch

            model = self.model

            def zero_grad(set_to_none: bool = True) -> None:
                # the list is taken at the first call, inside the training loop: after a resume has
                # loaded the checkpoint's adapter weights
                params = self._trainable_parameters(model)
                if params is None:
                    torch.nn.Module.zero_grad(model, set_to_none)
                    return
                for p in params:
                    if set_to_none:
                        p.grad = None
                    elif p.grad is not None:
                        p.grad.zero_()

            model.zero_grad = zero_grad  # the frozen parameters never hold a gradient
            try:
                return super().train(*args, **kwargs)
            finally:
                del model.zero_grad  # back to nn.Module.zero_grad

    return LeanTrainer
