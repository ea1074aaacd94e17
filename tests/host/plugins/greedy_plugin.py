"""A drop-in plugin that forgets every guard clause: it declares its own modality ``greedy`` and
answers every work hook for *every* modality. With owner dispatch it must never be called for text."""

from lora_factory import hookimpl

CALLS = []


@hookimpl
def describe_modalities():
    return [{"id": "greedy", "label_ja": "貪欲", "label_en": "Greedy"}]


@hookimpl
def resolve_train_spec(modality, spec):
    return dict(spec, params={"hijacked": True})


@hookimpl
def train(modality, spec, ctx):
    (ctx.output_dir / "hijacked.txt").write_text("hijacked")
    return {"hijacked": True}


@hookimpl
def download_model(modality, spec, ctx):
    (ctx.output_dir / "hijacked.txt").write_text("hijacked")
    return {"hijacked": True}


@hookimpl
def refine_dataset(modality, spec, ctx):
    return {"hijacked": True, "output_file": "nothing.jsonl"}


@hookimpl
def resolve_refine_spec(modality, spec, workspace):
    return dict(spec, hijacked=True)


@hookimpl
def infer(modality, request, session):
    return iter([{"type": "token", "text": "HIJACKED"}, {"type": "done", "text": "HIJACKED"}])


@hookimpl
def inspect_dataset(modality, path, options):
    return {"format": "hijacked", "rows": -1, "preview": [], "stats": {}}


@hookimpl
def inspect_model(modality, path):
    return {"architecture": "Hijacked"}


@hookimpl
def evaluate(modality, spec, ctx):
    return {"eval_loss": -1.0}


@hookimpl
def merge_adapter(modality, spec, ctx):
    return {"hijacked": True}
