"""The plugin contract of LoRA Factory.

Each modality (text, image, audio, or a third party's) is a pluggy plugin implementing these hooks.
The host calls every hook that takes ``modality`` **on the plugin that owns that modality only** (the
one that declared it in ``describe_modalities``; see ``core/plugins.py`` for the rule when two declare
the same id), so a plugin needs no ``if modality != mine: return None`` guard (one is harmless). The
work hooks are ``firstresult=True``: ``None`` means "not implemented here".

Specs only grow: an argument is never renamed or removed, and a plugin may accept only the arguments
it needs (pluggy passes them by name). Heavy imports (torch, transformers, ...) belong inside the
hook bodies, never at module import: the server loads every plugin at start-up.

Every hook is documented in ``docs/plugins.md`` under its exact signature (a test checks this).
"""

from __future__ import annotations

from typing import Any

import pluggy

from lora_factory.core.plugin_host.faces import InferenceSession, JobContext, Workspace

hookspec = pluggy.HookspecMarker("lora_factory")
hookimpl = pluggy.HookimplMarker("lora_factory")


@hookspec
def describe_modalities() -> list[dict[str, Any]]:
    """Declare the modalities this plugin serves.

    :return: a list of descriptions (plain dicts, validated by ``ModalityDescription``): ``id``,
        ``label_ja``, ``label_en`` and optionally ``presets`` (name -> params), ``preset_info`` (name ->
        {label_ja, label_en, description_ja, description_en}: what each preset is for), ``default_preset``,
        ``dataset_kind`` (``"file"`` or ``"folder"``), ``dataset_formats``, ``dataset_extensions``,
        ``refine_operations`` (name -> {label_ja, label_en, params_schema}, and ``uses_model: true`` for an
        operation that loads a model: its refine is then forked warm, as a training), ``refine_output_format`` (the
        format a refined dataset is written in, e.g. ``"openai"``), ``train_params_schema``,
        ``training_methods`` (``[{id, label_ja, label_en, data, uses_rewards}]``, sent back as ``params.method``),
        ``reward_functions`` (``[{name, description_ja, description_en, options}]``: the built-in rewards of the
        methods that use them; plugins add theirs with ``register_reward_functions``),
        ``sample_datasets`` (absolute paths the host may copy for a demo), ``inference_kinds``
        (``chat``, ``image``, ``speech``, ``transcribe`` ...), ``infer_schemas`` (kind ->
        {input_schema, params_schema, presets}), ``aux_model_kinds`` (sub-folder -> labels),
        ``regression_checks`` (check kind -> {label_ja, label_en, params_schema}), ``licenses``,
        ``dataset_exports`` (export target -> {label_ja, label_en}: dataset layouts ``export_dataset``
        writes), ``export_targets`` (target -> {label_ja, label_en, description_ja, description_en,
        params_schema}: what ``export_adapter`` can write), ``worker_modules`` (the libraries its train / eval /
        merge / export workers import, and those of a demo-model build, a single-file import, a refine with
        a model, e.g. ``["peft", "diffusers"]``: on Linux a warm start imports them
        once and forks the following workers with them loaded; libraries only, never your plugin's own
        modules) and ``supports`` (e.g. ``["chat", "tiny_model", "merge", "single_file", "item_edit"]``).
    A declared modality gets ``models/<id>/``, ``datasets/<id>/``, ``lora_adapters/<id>/`` and ``exports/<id>/``.
    Runs in the server process: must be cheap and must not import torch.
    """


@hookspec(firstresult=True)
def download_model(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Obtain a base model into ``ctx.output_dir`` (a ``download`` job, in the worker process).

    :param modality: the requested modality (always one you declared: the host calls its owner only).
    :param spec: ``source`` is ``"hub"`` (``repo_id``, ``revision``, ``token``, ``variant``), ``"local"``
        (``local_path``, a folder to import), ``"single_file"`` (``local_path``, one ``.safetensors``
        checkpoint, when ``supports`` has ``single_file``) or ``"tiny"`` (a random-weight offline demo
        model); ``name`` is the destination folder name; ``model_kind`` is ``"base"`` or one of the
        modality's ``aux_model_kinds`` (the folder then lands in ``models/<modality>/<kind>/``).
    :param ctx: the ``JobContext``; report bytes through ``ctx.progress``.
    :return: a summary dict (stored as the job's result). The host moves ``ctx.output_dir`` to
        ``models/<modality>/<name>/`` only after the hook returns, so a half download never looks
        complete.
    :raises LoRAFactoryError: ``HUB_UNREACHABLE`` without network, ``MODEL_NOT_FOUND``, ...
    """


@hookspec(firstresult=True)
def refine_dataset(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Produce a new dataset version from an existing one (a ``refine`` job).

    :param spec: ``dataset`` (absolute path of the parent version, a file or a folder, inside the
        workspace), ``operations`` (list of ``{"op": name, "params": {...}}``, applied in order),
        ``output_name`` (name of the new version, without suffix).
    :return: the report: ``rows_in``, ``rows_out``, ``removed`` (reason -> count), ``examples`` and
        ``output`` = ``{"kind": "file" | "folder", "name": <inside ctx.output_dir>, "format": ...}``
        (``output_file`` alone still works for a file). The host moves it to ``datasets/<modality>/``,
        records its format and the lineage.
    """


@hookspec(firstresult=True)
def train(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Train an adapter into ``ctx.output_dir`` (a ``train`` job).

    :param spec: ``base_model`` and ``dataset`` (absolute paths inside the workspace), ``preset``,
        ``params`` (overrides of the preset), ``output_name``.
    :param ctx: ``ctx.progress(step, max_steps, loss=..., **metrics)`` every step; stop, save and
        return when ``ctx.should_stop()`` turns true; save checkpoints under ``ctx.checkpoint_dir``
        and resume from ``ctx.resume_checkpoint`` when it is not None; samples made during training
        go into ``ctx.sample_dir`` and are shown live with ``ctx.report_sample(path, step, kind)``.
    :return: final metrics (``final_loss``, ...). The host moves ``ctx.output_dir`` to
        ``lora_adapters/<modality>/<output_name>/`` and registers it with its lineage.
    """


@hookspec(firstresult=True)
def infer(modality: str, request: dict[str, Any], session: InferenceSession) -> Any:
    """Answer one inference request, in the long-lived inference worker (or an eval job).

    :param request: what ``resolve_infer_request`` returned (the host always calls it first, in the
        server): ``base_model`` (absolute path), ``adapters`` (``[{"path", "name", "weight"}]``, the one
        list of adapters to apply, in order), ``adapter`` (the first one's path or None, for a plugin that
        applies a single adapter), ``task`` (one of ``inference_kinds``, None for chat), ``messages``
        (chat), ``input`` (generate: prompt, text, files as absolute paths ...), ``params`` (generation
        parameters, already validated: trust them), ``stream``.
    :param session: a per-process ``InferenceSession``; keep loaded models in ``session.cache`` so
        switching adapters does not reload the base; write media files into ``session.outputs_dir``.
    :return: an iterator of events, in order: ``{"type": "token", "text"}``,
        ``{"type": "image", "path", "meta"}``, ``{"type": "audio", "chunk" (base64 PCM16),
        "sample_rate", "index"}`` as each piece is made, ``{"type": "audio", "path", "sample_rate",
        "meta"}``, and last one ``{"type": "done", "text"?, "usage"?, ...}``. The host turns paths into
        URLs and relays chunks to the client as they come.
    """


@hookspec(firstresult=True)
def evaluate(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Compute held-out metrics for a model or an adapter (part of an ``eval`` job).

    :param spec: ``base_model``, ``adapter`` (or None), ``dataset`` (absolute paths), ``params``.
    :return: metrics such as ``eval_loss`` and ``perplexity``.
    """


@hookspec(firstresult=True)
def merge_adapter(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Merge an adapter into its base and save a full model into ``ctx.output_dir`` (``merge`` job).

    :param spec: ``base_model``, ``adapter`` (absolute paths), ``output_name``.
    :return: a summary; the host moves the folder to ``models/<modality>/<output_name>/``.
    """


@hookspec(firstresult=True)
def inspect_model(modality: str, path: str) -> dict[str, Any] | None:
    """Describe a model folder cheaply (server process, no torch): ``architecture``, ``parameters``,
    ``dtype``, ``chat_template`` (bool) and anything else worth listing. Return None when not yours.
    """


@hookspec(firstresult=True)
def inspect_dataset(modality: str, path: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Validate and describe a dataset file (server process, no torch).

    :param options: ``format`` (or ``"auto"``), ``mapping`` (column overrides), ``encoding``,
        ``preview_rows``.
    :param path: a file, or for a ``folder`` modality the dataset folder (also the temporary folder
        of an upload being validated).
    :param options: also ``offset`` (first item of the preview page) for folder datasets.
    :return: ``format``, ``encoding``, ``rows``, ``stats``, ``preview`` (rows as conversations, or
        items ``{"id", "text", "media": [{"kind": "image" | "audio", "file": <relative path>}]}``; the
        host adds each media file's ``url``).
    :raises LoRAFactoryError: ``DATASET_INVALID`` with ``detail["errors"]`` listing
        ``{"line" | "file", "reason"}`` for the first bad rows or files.
    """


@hookspec(firstresult=True)
def resolve_train_spec(modality: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    """Validate a train request and return it fully resolved (server process, no torch).

    Called before the job is queued, so a bad preset or parameter is a 4xx at once instead of a
    failed job later, and ``runs/<job_id>/config.json`` holds every value the run will use.

    :param spec: ``base_model``, ``dataset`` (absolute paths), ``preset``, ``params``, ``output_name``.
    :return: the spec with ``params`` replaced by the complete, validated parameter set.
    :raises LoRAFactoryError: ``UNKNOWN_PRESET``, ``INVALID_TRAIN_PARAMS`` (field in ``detail``).
    """


@hookspec(firstresult=True)
def export_dataset(modality: str, path: str, target: str, out_file: str) -> dict[str, Any] | None:
    """Write a dataset as a zip in the layout another tool opens (server process, no torch).

    :param path: the dataset (a file, or for a ``folder`` modality the dataset folder).
    :param target: one of the ids the plugin declared in ``dataset_exports`` (the host checks).
    :param out_file: where to write the zip (temp file + rename is the plugin's job).
    :return: ``{"path": out_file, "clips" | "rows": int, ...}`` or None when not implemented.
    :raises LoRAFactoryError: ``EXPORT_IMPOSSIBLE`` with the reason (e.g. a language the target lacks).
    """


@hookspec(firstresult=True)
def import_dataset_index(modality: str, path: str, datasets_dir: str,
                         options: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Import the datasets listed by an index file (e.g. LLaMA-Factory's ``dataset_info.json``).

    :param path: the index file (absolute, inside the workspace); its datasets lie beside it.
    :param datasets_dir: ``datasets/<modality>/``; copy each dataset there (temp file + rename,
        ``OUTPUT_EXISTS`` on a collision).
    :param options: how to read the listed files where the index does not say (text: ``txt_split``).
    :return: one ``{"name", "file", "format", "mapping"}`` per imported dataset (optionally
        ``read_options``, recorded beside the dataset and handed back to every job, and ``note``),
        and one ``{"name", "skipped": reason}`` per entry that was not imported.
    """


@hookspec(firstresult=True)
def resolve_refine_spec(modality: str, spec: dict[str, Any], workspace: Workspace) -> dict[str, Any] | None:
    """Validate a refine request and return it with every operation's parameters filled in.

    Runs in the server before the job is queued, so an unknown operation or a bad parameter is a
    4xx at once and ``runs/<job_id>/config.json`` shows every value the run uses. Parameters that
    name a model or an adapter are workspace references: resolve them here with
    ``workspace.resolve_ref(value, "models" | "lora_adapters", modality)`` (never trust a client's
    absolute path). Set ``spec["gpu"] = True`` when the job will load a model on the accelerator, so
    it queues with the training jobs.

    :param spec: ``dataset`` (absolute path), ``operations`` (``[{"op", "params"}]``), ``output_name``.
    :param workspace: the workspace (``kit.Workspace``: ``home``, ``resolve_ref``, ``datasets_dir`` ...).
    :raises LoRAFactoryError: ``REFINE_INVALID_OPERATION`` / ``REFINE_INVALID_PARAMS``.
    """


@hookspec(firstresult=True)
def resolve_infer_request(modality: str, request: dict[str, Any], workspace: Workspace) -> dict[str, Any] | None:
    """Validate an inference request once and resolve what it names, in the server before it is sent on.

    Called for every request (chat, generate, a regression case) before any model loads, so every error
    a request can have (a bad parameter, a missing input, the wrong kind of model) is a 4xx at once; the
    ``infer`` hook then gets exactly what this returns and validates nothing again.

    :param request: as ``infer`` receives it (paths already resolved for the base model, the adapters
        and uploaded input files); ``adapters`` is the one list of adapters.
    :param workspace: resolve auxiliary models named in ``params`` (a VAE, a ControlNet, an ASR model)
        with ``workspace.resolve_ref("models/<modality>/<kind>/<name>", "models", modality)``.
    :return: the request to run, with ``params`` validated and complete and ``adapters`` the list to
        apply (the host derives ``adapter`` from it); None keeps the request as it is.
    :raises LoRAFactoryError: ``INVALID_INFER_PARAMS`` (field in ``detail``) for a bad parameter.
    """


@hookspec(firstresult=True)
def regression_check(modality: str, check: dict[str, Any], output: dict[str, Any], reference: dict[str, Any] | None,
                     session: InferenceSession) -> dict[str, Any] | None:
    """Evaluate one check of a kind the plugin declared in ``regression_checks`` (in an ``eval`` job).

    :param check: the check as written in the suite (``type`` plus its own fields, e.g. ``min``).
    :param output: the target's answer: ``text``, ``media`` (``[{"kind", "path", "meta", ...}]``) and
        ``case`` (the suite case).
    :param reference: the previous adapter version's answer to the same case, or None.
    :return: ``{"passed": bool, "score": float | None, "detail": ...}``.
    """


@hookspec(firstresult=True)
def resolve_export_spec(modality: str, spec: dict[str, Any], workspace: Workspace) -> dict[str, Any] | None:
    """Validate an export request before the job is queued (server process, no torch).

    A target or a parameter that cannot work is a 4xx at once; a target that works but that a
    runtime may refuse (vLLM's ``max_lora_rank``, an Ollama limit) is a warning the user sees before
    and after the job.

    :param spec: ``adapter``, ``base_model`` (absolute paths), ``target`` (one of ``export_targets``),
        ``params``, ``output_name``, ``adapter_ref``, ``base_model_ref``.
    :param workspace: the :class:`~lora_factory.core.storage.workspace.Workspace`.
    :return: the spec with ``params`` complete and ``warnings`` (``[{"code", "message", "message_ja"}]``).
    :raises LoRAFactoryError: ``EXPORT_UNKNOWN_TARGET``, ``INVALID_EXPORT_PARAMS``, ``EXPORT_UNSUPPORTED``
        (with the reason: e.g. a trained ``lm_head``, an architecture the runtime lacks).
    """


@hookspec(firstresult=True)
def export_adapter(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Write an adapter in the form another runtime loads, into ``ctx.output_dir`` (an ``export`` job).

    :param spec: as ``resolve_export_spec`` returned it.
    :param ctx: the ``JobContext``: report stages through ``ctx.progress``, stop and return
        ``{"stopped": True}`` when ``ctx.should_stop()`` turns true, explain each step with ``ctx.log``.
    :return: a summary: ``files`` (names inside the output), ``primary`` (the one file a download
        gives, or None when the export is a folder), ``opens_in`` (runtimes), ``commands`` (how to load
        it there), ``checks`` and ``warnings``. Write a ``README.md`` (its model card) beside the files.
        The host moves ``ctx.output_dir`` to ``exports/<modality>/<output_name>/`` and records its
        lineage (the adapter, the base model).
    :raises LoRAFactoryError: ``EXPORT_UNSUPPORTED`` with the reason when the adapter cannot be exported.
    """


# -- extending the server, the CLI and the UI (called once per plugin, not per modality) ----------

@hookspec
def register_routes(register: Any, workspace: Workspace) -> None:
    """Add HTTP routes to the server (as datasette's ``register_routes``). Runs once at start-up.

    :param register: ``register(router, modality=None)`` with a ``fastapi.APIRouter`` whose paths are
        relative (``"/dictionary"``). With ``modality`` (one you own) it is mounted under
        ``/api/<modality>``; without, under ``/api/plugins/<plugin name>``. Every route sits behind the
        host's guard (Host names, same-origin state changes, the token beyond loopback) like the
        host's own. Import FastAPI inside the hook: the job workers load plugins too.
    :param workspace: the :class:`~lora_factory.core.storage.workspace.Workspace` the server serves.
    A route that clashes with a host route never shadows it (the host's are mounted first).
    """


@hookspec
def register_commands(register: Any) -> None:
    """Add ``lora-factory <command>`` sub-commands to the CLI (as llm's ``register_commands``).

    :param register: ``register(name, run, help="", configure=None)``; ``configure(parser)`` adds the
        command's arguments to its ``argparse.ArgumentParser`` (``--home`` is already there);
        ``run(args, workspace)`` does the work and returns the exit status (None is 0). A
        ``LoRAFactoryError`` is printed in Japanese and English like the host's own commands'. A name
        already taken (the host's, or another plugin's) is refused: ``lora-factory plugins`` says why.
    """


@hookspec
def register_ui(register: Any) -> None:
    """Add front-end modules to the web UI (as datasette's plugin ``static/`` and ``extra_js_urls``).

    :param register: ``register(static_dir, script=None, modality=None)``: the folder is served at
        ``/static/plugins/<plugin name>/`` (public, like the host's UI); ``script`` (a file in it) is an
        ES module the UI imports at start-up, before its tabs are built. The module registers what it
        brings with the host's registries, importing them by absolute URL:
        ``registerView(kind, mount, modality)`` from ``/static/js/views/registry.js`` (a view of the
        推論 tab for an inference kind) and ``registerTab(id, module, {modality, label_ja, label_en})``
        from ``/static/js/tabs/registry.js`` (a tab shown for that modality only). ``modality`` (one
        you own) is listed with the module in ``GET /api/ui/modules``.
    """


# -- adding to what a training method uses (called once per plugin, not per modality) --------------

@hookspec
def register_reward_functions(register: Any) -> None:
    """Add named reward functions for the training methods that learn from rewards (GRPO in the text plugin).

    :param register: ``register(name, fn, description_ja="", description_en="")``; ``fn(prompts, completions,
        answers, **options) -> list[float]`` scores each sampled completion (plain strings; ``answers`` holds
        each row's reference answer, ``""`` where a row has none; ``options`` are the other keys of the run's
        reward spec: ``{"name": "polite", "weight": 0.5, "min": 2}`` calls it with ``min=2``). A run names it in
        ``params.rewards``; ``GET /api/rewards`` lists it beside the built-ins. A name must be letters,
        digits, ``_`` or ``-``; one already taken (a built-in's, or another plugin's) is refused and
        ``lora-factory plugins`` says why. A drop-in ``plugins/*.py`` file may implement only this hook.
    Called in the server (to list the rewards) and in the job worker (when a run names a reward that is not
    a built-in). A reward that raises is reported by name with its traceback in the job's log; that batch
    scores 0 for it and the run goes on.
    """
