"""Pydantic models at the HTTP and CLI edges: what a client may send, validated before any work."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


DEVICES_FIELD = Field(None, description="how many devices (GPUs) the job takes, or which ones (indices or ids such "
                                        "as 0, \"1\", \"cpu:0\"); default 1 for GPU work, 0 for CPU-only jobs")


class TrainStartRequest(StrictModel):
    base_model: str = Field(description="models/<modality>/<dir> or a bare folder name")
    dataset: str = Field(description="datasets/<modality>/<file> or a bare file name")
    output_name: str
    preset: str = "quick"
    modality: str = "text"
    params: dict[str, Any] = Field(default_factory=dict)
    trust_remote_code: bool = False
    devices: int | list[int | str] | None = DEVICES_FIELD


class RefineRequest(StrictModel):
    modality: str = "text"
    dataset: str
    operations: list[dict[str, Any]] = Field(min_length=1)
    output_name: str
    devices: int | list[int | str] | None = DEVICES_FIELD


class DownloadRequest(StrictModel):
    modality: str = "text"
    repo_id: str = Field(pattern=r"^[A-Za-z0-9][\w\-.]*/[\w\-.]+$|^[A-Za-z0-9][\w\-.]*$")
    revision: str = "main"
    name: str | None = None
    kind: str | None = Field(None, description="an auxiliary model kind of the modality (vae, controlnet ...)")
    variant: str | None = Field(None, pattern=r"^[a-z0-9_]{1,16}$", description="precision variant, e.g. fp16")


class ImportRequest(StrictModel):
    modality: str = "text"
    source_path: str = Field(description="absolute path of a model folder (or a single .safetensors file "
                                         "where the modality supports single_file)")
    name: str | None = None
    kind: str | None = Field(None, description="an auxiliary model kind of the modality (vae, controlnet ...)")


class ImportFolderRequest(StrictModel):
    modality: str
    source_path: str = Field(description="absolute path of a dataset folder on the server's machine")
    name: str | None = None


class TinyModelRequest(StrictModel):
    modality: str = "text"
    name: str = "tiny-demo"
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description='what to build, as the plugin documents it: {"kind": "asr"}, {"arch": "sdxl"}')


class MergeRequest(StrictModel):
    modality: str = "text"
    adapter: str
    base_model: str | None = None
    output_name: str
    devices: int | list[int | str] | None = DEVICES_FIELD


class ExportRequest(StrictModel):
    modality: str = "text"
    adapter: str
    target: str = Field(description="one of the modality's export_targets (text: gguf, ollama, vllm ...)")
    base_model: str | None = None
    output_name: str | None = Field(None, description="default: <adapter>-<target>")
    params: dict[str, Any] = Field(default_factory=dict)
    devices: int | list[int | str] | None = DEVICES_FIELD


class EvalRequest(StrictModel):
    modality: str = "text"
    adapter: str
    base_model: str | None = None
    suite: list[dict[str, Any]] | None = None
    suite_file: str | None = None
    dataset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    compare_previous: bool = True
    devices: int | list[int | str] | None = DEVICES_FIELD


class SampleDatasetRequest(StrictModel):
    modality: str = "text"
    name: str | None = None


class ImportInfoRequest(StrictModel):
    modality: str = "text"
    dataset_info_path: str
    txt_split: str | None = None  # how .txt entries split into rows (text: line / paragraph / whole / auto)


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(StrictModel):
    modality: str = "text"
    base_model: str
    adapter: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    stream: bool = True


MAX_ADAPTERS = 8  # adapters mixed in one generation (the image plugin keeps 8 loaded; a voice mix of thousands hung)


class AdapterWeight(StrictModel):
    name: str
    weight: float = Field(1.0, ge=-4.0, le=4.0)


class GenerateRequest(StrictModel):
    """The modality-neutral inference entry: an image, speech, a transcript ... (chat has its own)."""

    modality: str
    base_model: str
    adapter: str | None = None
    adapters: list[AdapterWeight] = Field(default_factory=list, max_length=MAX_ADAPTERS,
                                          description="several adapters with a weight each (at most 8)")
    task: str | None = Field(None, description="an inference kind of the modality (image, speech, transcribe ...)")
    input: dict[str, Any] = Field(default_factory=dict, description='files as "upload:<id>" from /api/infer/uploads')
    params: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    compare: bool = Field(False, description="base and adapter with the same parameters and seed, side by side")


class OpenPathRequest(StrictModel):
    key: str


class ConfirmBody(BaseModel):
    confirm: bool = False


class RerunRequest(BaseModel):
    output_name: str | None = None


class SettingsUpdate(StrictModel):
    """Only the fields given are changed; an empty string clears one."""

    hf_token: str | None = None
    hf_endpoint: str | None = None
    modality_owners: dict[str, str] | None = None


class PreferenceChoiceRequest(StrictModel):
    """One choice made in the chat compare view: the better of two answers to the same prompt."""

    modality: str = "text"
    dataset: str = Field(description="preference dataset to append to (created when missing), e.g. compare_prefs")
    messages: list[dict[str, Any]] = Field(min_length=1, description="the conversation the two answers reply to")
    chosen: str
    rejected: str
    chosen_model: dict[str, Any] = Field(default_factory=dict, description='{"base_model", "adapter"} refs')
    rejected_model: dict[str, Any] = Field(default_factory=dict)
