"""Evol-Instruct (Xu et al. 2023, "WizardLM: Empowering Large Language Models to Follow Complex
Instructions"): grow harder and rarer instructions from a seed set with an LLM.

Why this shape: the paper's loop is *evolve -> answer -> eliminate*. The evolving prompts below are
the paper's (nlpxucan/WizardLM ``Evol_Instruct/depth.py`` and ``breadth.py``): four in-depth methods
(add constraints, deepen, concretize, increase reasoning steps) and in-breadth evolving. One line is
added to each, on by default (``keep_language``): answer in the language of the given prompt, so a
Japanese seed stays Japanese. Elimination follows the paper's four rules:

1. no information gain: the LLM judges the two instructions "Equal" (the paper's Appendix G prompt);
2. the answer contains "sorry" (or a Japanese apology) and is short (< 80 words);
3. the answer is only punctuation and stop words;
4. the evolved instruction copies words of the evolving prompt ("given prompt", "#Rewritten Prompt#" ...).

The LLM is any :class:`Generator`: an OpenAI-compatible server (llama.cpp, vLLM, Ollama ``/v1``) or
a local transformers model. Each finished seed item is appended to ``evol_state.jsonl`` in the job's
run folder, so a resumed job skips the items already done.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from lora_factory.kit import LoRAFactoryError

# -- the paper's prompts ------------------------------------------------------------------------

DEPTH_BASE = (
    "I want you act as a Prompt Rewriter.\r\n"
    "Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems "
    "(e.g., chatgpt and GPT4) a bit harder to handle.\r\n"
    "But the rewritten prompt must be reasonable and must be understood and responded by humans.\r\n"
    "Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. "
    "Also, please do not omit the input in #The Given Prompt#. \r\n"
    "You SHOULD complicate the given prompt using the following method: \r\n"
    "{method} \r\n"
    "You should try your best not to make the #Rewritten Prompt# become verbose, "
    "#Rewritten Prompt# can only add 10 to 20 words into #The Given Prompt#. \r\n"
    "'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not allowed to "
    "appear in #Rewritten Prompt#\r\n"
)
DEPTH_METHODS = {
    "constraints": "Please add one more constraints/requirements into #The Given Prompt#'",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry "
    "can be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it "
    "to explicitly request multiple-step reasoning.",
}
BREADTH_BASE = (
    "I want you act as a Prompt Creator.\r\n"
    "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\r\n"
    "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\r\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\r\n"
    "The #Created Prompt# must be reasonable and must be understood and responded by humans.\r\n"
    "'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in "
    "#Created Prompt#\r\n"
)
EQUAL_PROMPT = (
    "Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the "
    "following requirements:\r\n"
    "1. They have same constraints and requirements.\r\n"
    "2. They have same depth and breadth of the inquiry.\r\n"
    "The First Prompt: {first}\r\n"
    "The Second Prompt: {second}\r\n"
    "Your Judgement (Just answer: Equal or Not Equal. No need to explain the reason.):\r\n"
)
LANGUAGE_LINE = "Write the {target} in the same language as the {given}.\r\n"
METHODS = ["constraints", "deepen", "concretize", "reasoning", "breadth"]


def evolving_prompt(method: str, instruction: str, keep_language: bool = True) -> str:
    """The paper's prompt for ``method`` applied to ``instruction``."""
    if method == "breadth":
        prompt = BREADTH_BASE
        if keep_language:
            prompt += LANGUAGE_LINE.format(target="#Created Prompt#", given="#Given Prompt#")
        return prompt + f"#Given Prompt#: \r\n {instruction} \r\n#Created Prompt#:\r\n"
    prompt = DEPTH_BASE.format(method=DEPTH_METHODS[method])
    if keep_language:
        prompt += LANGUAGE_LINE.format(target="#Rewritten Prompt#", given="#The Given Prompt#")
    return prompt + f"#The Given Prompt#: \r\n {instruction} \r\n#Rewritten Prompt#:\r\n"


# -- elimination (the paper's rules 2-4; rule 1 needs the LLM) ----------------------------------

COPIED_MARKERS = (
    "given prompt", "rewritten prompt", "created prompt", "#the given prompt#", "#rewritten prompt#",
    "#given prompt#", "#created prompt#", "与えられたプロンプト", "書き換えたプロンプト", "書き換えられたプロンプト",
)
APOLOGIES = ("sorry", "申し訳", "すみません", "ごめんなさい")
STOP_WORDS = frozenset(
    "a an the and or but is are was were be been of in on at to for with by it this that these those i you he she "
    "we they me my your it's as so if not no yes do does did can will would should".split()
    + "は が の を に で と も へ や か な ね よ です ます でした ました だ である こと もの それ これ あれ この その".split()
)
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def word_count(text: str) -> int:
    """Words for the "short answer" rule: whitespace words, plus Japanese at ~2 characters a word."""
    cjk = len(_CJK_RE.findall(text))
    latin = len(_CJK_RE.sub(" ", text).split())
    return latin + (cjk + 1) // 2


def copies_prompt(instruction: str) -> bool:
    lowered = instruction.lower()
    return any(marker in lowered for marker in COPIED_MARKERS)


def is_apology(answer: str) -> bool:
    lowered = answer.lower()
    return any(a in lowered for a in APOLOGIES) and word_count(answer) < 80


def only_stop_words(answer: str) -> bool:
    words = _WORD_RE.findall(answer.lower())
    return all(w in STOP_WORDS for w in words)  # True for punctuation-only and empty answers


def judged_equal(judgement: str) -> bool:
    lowered = judgement.strip().lower()
    return "equal" in lowered and "not equal" not in lowered and "unequal" not in lowered


def clean_instruction(text: str) -> str:
    """Strip quotes and whitespace the LLM wraps around the new instruction (not the copied markers:
    those must stay visible to rule 4)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'「":
        text = text[1:-1].strip()
    return text


# -- generators ---------------------------------------------------------------------------------

class Generator(Protocol):
    """Anything that can complete a prompt: an HTTP server or a local model."""

    def complete(self, prompt: str, max_tokens: int, temperature: float) -> str: ...


class OpenAICompatibleGenerator:
    """``POST {base_url}/chat/completions``: llama.cpp server, vLLM, Ollama (``.../v1``), OpenAI."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def complete(self, prompt: str, max_tokens: int, temperature: float) -> str:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
            "stream": False,
        }
        url = f"{self.base_url}/chat/completions"
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise LoRAFactoryError(
                "GENERATOR_UNREACHABLE",
                f"生成サーバー {url} に接続できません: {exc}",
                f"Cannot reach the generation server {url}: {exc}",
                http_status=502,
                detail={"url": url},
            ) from exc
        if response.status_code >= 400:
            raise LoRAFactoryError(
                "GENERATOR_ERROR",
                f"生成サーバーがエラーを返しました (HTTP {response.status_code}): {response.text[:300]}",
                f"The generation server answered HTTP {response.status_code}: {response.text[:300]}",
                http_status=502,
                detail={"url": url, "status": response.status_code},
            )
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LoRAFactoryError(
                "GENERATOR_ERROR",
                "生成サーバーの応答が OpenAI 形式ではありません。",
                "The generation server's answer is not in the OpenAI chat format.",
                http_status=502,
                detail={"url": url, "body": response.text[:300]},
            ) from exc


class LocalModelGenerator:
    """A transformers causal LM (optionally with a LoRA adapter), loaded on first use."""

    def __init__(self, model_path: str | Path, adapter_path: str | Path | None = None, seed: int = 0) -> None:
        self.model_path = Path(model_path)
        self.adapter_path = Path(adapter_path) if adapter_path else None
        self.seed = seed
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not self.model_path.is_dir():
            raise LoRAFactoryError(
                "MODEL_NOT_FOUND",
                f"モデル「{self.model_path.name}」が見つかりません。",
                f"Model '{self.model_path.name}' was not found.",
                http_status=404,
                detail={"path": str(self.model_path)},
            )
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        model = AutoModelForCausalLM.from_pretrained(self.model_path)
        if self.adapter_path:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter_path)
        model.eval()
        self._model = model

    def complete(self, prompt: str, max_tokens: int, temperature: float) -> str:
        import torch

        if self._model is None:
            self._load()
        tok, model = self._tokenizer, self._model
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
            input_ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        else:
            input_ids = tok(prompt, return_tensors="pt")["input_ids"]
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and input_ids.shape[1] + max_tokens > limit:  # keep the end: it holds the instruction
            input_ids = input_ids[:, -max(1, limit - max_tokens):]
        kwargs: dict[str, Any] = {"max_new_tokens": int(max_tokens), "do_sample": temperature > 0}
        if temperature > 0:
            kwargs["temperature"] = float(temperature)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        torch.manual_seed(self.seed)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 pad_token_id=pad, **kwargs)
        return tok.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)


# -- parameters ---------------------------------------------------------------------------------

class OpenAIGeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["openai"] = "openai"
    base_url: str = Field(description="e.g. http://127.0.0.1:8080/v1")
    model: str = "default"
    api_key: str | None = None
    timeout: float = Field(120.0, gt=0)


class LocalGeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["local"] = "local"
    model: str | None = Field(None, description="a model in models/text/, e.g. models/text/tiny",
                              json_schema_extra={"ui_choices": "models"})  # the form offers the installed models
    adapter: str | None = Field(None, description="optional adapter, e.g. lora_adapters/text/my-lora")
    model_path: SkipJsonSchema[str | None] = Field(None, description="set from 'model' by resolve_operations")
    adapter_path: SkipJsonSchema[str | None] = Field(None, description="set from 'adapter' by resolve_operations")

    @model_validator(mode="after")
    def _needs_a_model(self) -> LocalGeneratorParams:
        if not (self.model_path or self.model):
            raise ValueError("give 'model' (or 'model_path') for a local generator")
        return self


class EvolParams(BaseModel):
    """Parameters of the ``evol_instruct`` operation."""

    model_config = ConfigDict(extra="forbid")
    generator: OpenAIGeneratorParams | LocalGeneratorParams = Field(discriminator="type")
    rounds: int = Field(1, ge=1, le=5)
    methods: list[Literal["constraints", "deepen", "concretize", "reasoning", "breadth"]] = Field(
        default_factory=lambda: list(METHODS), min_length=1)
    max_items: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    generate_answers: bool = True
    check_equal: bool = True
    keep_language: bool = True
    max_new_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0.0, le=2.0)


def make_generator(params: EvolParams) -> Generator:
    g = params.generator
    if isinstance(g, OpenAIGeneratorParams):
        return OpenAICompatibleGenerator(g.base_url, g.model, g.api_key, g.timeout)
    path = g.model_path or g.model
    if not path or not Path(path).is_absolute():
        raise LoRAFactoryError(
            "REFINE_INVALID_PARAMS",
            f"ローカル生成モデル「{path}」のパスが解決されていません。",
            f"The local generator model '{path}' was not resolved to a folder.",
            http_status=400,
            detail={"op": "evol_instruct", "field": "generator.model_path"},
        )
    return LocalModelGenerator(path, g.adapter_path, seed=params.seed)


# -- the loop -----------------------------------------------------------------------------------

def _seed_instruction(row: dict[str, Any]) -> tuple[str, str | None] | None:
    """``(instruction, system)`` of a single-turn conversation; None for others (not evolved)."""
    messages = row.get("messages")
    if not messages:
        return None
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    rest = messages[1:] if system is not None else messages
    if len(rest) != 2 or rest[0]["role"] != "user" or rest[1]["role"] != "assistant":
        return None
    return rest[0]["content"], system


def _key(instruction: str) -> str:
    return hashlib.sha1(instruction.encode("utf-8")).hexdigest()[:16]


def _load_state(path: Path, op_index: int) -> dict[tuple[int, str], dict[str, Any]]:
    done: dict[tuple[int, str], dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash: that item is simply redone
        if record.get("op") == op_index:
            done[(int(record["index"]), str(record["key"]))] = record
    return done


def evolve_item(gen: Generator, instruction: str, system: str | None, index: int, params: EvolParams
                ) -> dict[str, Any]:
    """Run all rounds for one seed instruction; returns the state record (rows, methods, eliminated)."""
    rows: list[dict[str, Any]] = []
    methods: Counter[str] = Counter()
    eliminated: Counter[str] = Counter()
    examples: list[dict[str, str]] = []
    current = instruction
    for round_no in range(params.rounds):
        method = random.Random(f"{params.seed}:{index}:{round_no}").choice(params.methods)
        methods[method] += 1
        prompt = evolving_prompt(method, current, params.keep_language)
        evolved = clean_instruction(gen.complete(prompt, params.max_new_tokens, params.temperature))
        reason = _eliminate_instruction(gen, current, evolved, params)
        answer = ""
        if reason is None and params.generate_answers:
            answer = gen.complete(evolved, params.max_new_tokens, params.temperature).strip()
            if is_apology(answer):
                reason = "sorry_short_answer"
            elif only_stop_words(answer):
                reason = "stopwords_only_answer"
        if reason is not None:
            eliminated[reason] += 1
            examples.append({"reason": reason, "method": method, "instruction": evolved[:200], "answer": answer[:200]})
            continue  # the next round starts again from the last instruction that survived
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": evolved}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "evol": {"method": method, "round": round_no + 1, "seed_index": index}})
        current = evolved
    return {"rows": rows, "methods": dict(methods), "eliminated": dict(eliminated), "examples": examples}


def _eliminate_instruction(gen: Generator, original: str, evolved: str, params: EvolParams) -> str | None:
    if not evolved.strip():
        return "empty_instruction"
    if copies_prompt(evolved):
        return "copied_prompt_words"
    if " ".join(evolved.split()) == " ".join(original.split()):
        return "no_information_gain"
    if params.check_equal:
        judgement = gen.complete(EQUAL_PROMPT.format(first=original, second=evolved), 8, 0.0)
        if judged_equal(judgement):
            return "no_information_gain"
    return None


def run_evol(rows: list[dict[str, Any]], params: EvolParams, ctx: Any, op_index: int = 0,
             generator: Generator | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evolve the single-turn rows of ``rows``; returns ``(originals + survivors, info)``.

    ``info``: ``items``, ``evolved`` (method -> count of surviving rows), ``methods`` (method ->
    attempts), ``eliminated`` (reason -> count), ``skipped`` (rows that are not single-turn),
    ``resumed`` (items read back from ``evol_state.jsonl``), ``stopped``, ``examples``.
    """
    gen = generator or make_generator(params)
    seeds = [(i, s) for i, s in ((i, _seed_instruction(r)) for i, r in enumerate(rows)) if s is not None]
    skipped = len(rows) - len(seeds)
    if params.max_items is not None:
        seeds = seeds[: params.max_items]
    state_path = Path(ctx.run_dir) / "evol_state.jsonl"
    done = _load_state(state_path, op_index)
    new_rows: list[dict[str, Any]] = []
    evolved: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    eliminated: Counter[str] = Counter()
    examples: list[dict[str, str]] = []
    resumed = 0
    stopped = False
    for step, (index, (instruction, system)) in enumerate(seeds, start=1):
        key = _key(instruction)
        record = done.get((index, key))
        if record is not None:
            resumed += 1
        else:
            if ctx.should_stop():
                stopped = True
                break
            record = {"op": op_index, "index": index, "key": key,
                      **evolve_item(gen, instruction, system, index, params)}
            with open(state_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        new_rows.extend(record["rows"])
        for row in record["rows"]:
            evolved[row["evol"]["method"]] += 1
        attempts.update(record["methods"])
        eliminated.update(record["eliminated"])
        examples.extend(record.get("examples", []))
        ctx.progress(step, len(seeds), op="evol_instruct", evolved=len(new_rows))
    out_rows = list(rows) + [{"messages": r["messages"]} for r in new_rows]
    info = {
        "items": len(seeds), "evolved": dict(evolved), "methods": dict(attempts),
        "eliminated": dict(eliminated), "skipped": skipped, "resumed": resumed, "stopped": stopped,
        "examples": examples,
    }
    return out_rows, info
