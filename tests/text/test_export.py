"""Text exports checked by the runtimes that load them: llama.cpp (through llama-cpp-python) loads the
GGUF base + GGUF LoRA we write and its greedy tokens equal our own peft greedy tokens on the tiny
model, with and without the LoRA; the Ollama template renders the prompts the model's Jinja template
renders; vLLM's limits are warned about; what cannot be exported is refused with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from tests.text.conftest import make_ctx

N_TOKENS = 12
PROMPTS = ["<|im_start|>user\n日本の首都は?<|im_end|>\n<|im_start|>assistant\n", "Hello, how are you"]


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        pytest.fail("llama-cpp-python is not installed: the GGUF exports are checked by llama.cpp itself. Install it "
                    "with `python3 setup.py --test` (builds the wheel once into ~/.cache/lora-factory/wheels) or "
                    "`pip install llama-cpp-python`.")
    return llama_cpp


@pytest.fixture(scope="module")
def random_lora(tiny_model, tmp_path_factory) -> Path:
    """A real PEFT adapter whose B matrices are not zero, so it visibly changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    out = tmp_path_factory.mktemp("lora") / "random-lora"
    peft_model.save_pretrained(str(out))
    return out


def _peft_greedy(tiny_model: Path, adapter: Path | None, ids: list[int]) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=N_TOKENS, do_sample=False, min_new_tokens=N_TOKENS,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


def _llama_greedy(model_path: Path, lora_path: Path | None, ids: list[int]) -> list[int]:
    import numpy as np

    llama_cpp = _llama_cpp()
    kwargs = {"lora_path": str(lora_path)} if lora_path else {}
    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=128, n_threads=2, verbose=False, logits_all=True, **kwargs)
    tokens = list(ids)
    llm.eval(tokens)
    out = []
    for _ in range(N_TOKENS):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        llm.eval([nxt])
    llm.close()
    return out


def _export(tmp_path, name, target, params, adapter, base):
    from lora_factory.plugins.text.export import resolve, run

    spec = resolve({"adapter": str(adapter), "base_model": str(base), "target": target, "params": params,
                    "output_name": name, "adapter_ref": f"lora_adapters/text/{adapter.name}",
                    "base_model_ref": f"models/text/{base.name}"})
    ctx = make_ctx(tmp_path / "ws", job_id=name, kind="export")
    result = run(spec, ctx)
    return Path(ctx.output_dir), result, spec


def test_gguf_lora_on_gguf_base_gives_peft_greedy_tokens_in_llama_cpp(tiny_model, random_lora, tmp_path):
    from transformers import AutoTokenizer

    out, result, _ = _export(tmp_path, "g", "gguf", {"what": "lora+base", "outtype": "f32", "model_outtype": "f32"},
                             random_lora, tiny_model)
    lora, base = out / result["files"][0], out / result["files"][1]
    assert lora.name.endswith("-lora-f32.gguf") and base.name == "tiny-chat-f32.gguf"
    assert result["primary"] is None and (out / "README.md").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        plain_hf, plain_cpp = _peft_greedy(tiny_model, None, ids), _llama_greedy(base, None, ids)
        tuned_hf, tuned_cpp = _peft_greedy(tiny_model, random_lora, ids), _llama_greedy(base, lora, ids)
        assert plain_cpp == plain_hf, prompt
        assert tuned_cpp == tuned_hf, prompt
        assert tuned_hf != plain_hf  # the LoRA demonstrably applies


def test_the_tokenizer_converts_to_gguf_with_the_same_ids(tiny_model, random_lora, tmp_path):
    from transformers import AutoTokenizer

    out, result, _ = _export(tmp_path, "t", "gguf", {"what": "lora+base", "model_outtype": "q8_0"},
                             random_lora, tiny_model)
    llama_cpp = _llama_cpp()
    llm = llama_cpp.Llama(model_path=str(out / result["files"][1]), n_ctx=64, verbose=False, vocab_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    for text in [*PROMPTS, "猫が好きです。LoRA adapts a model!", " leading space and  two"]:
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == expected, text
    assert llm.token_eos() == tokenizer.eos_token_id and llm.token_bos() == tokenizer.bos_token_id
    assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
    llm.close()


def test_gguf_lora_metadata_types_and_names(tiny_model, random_lora, tmp_path):
    import gguf
    from transformers import AutoTokenizer

    from lora_factory.plugins.text.gguf_model import export_model_gguf

    base = tmp_path / "base-f32.gguf"
    export_model_gguf(tiny_model, base, "f32")
    ids = AutoTokenizer.from_pretrained(str(tiny_model))(PROMPTS[0], add_special_tokens=False)["input_ids"]
    plain, tuned = _llama_greedy(base, None, ids), _peft_greedy(tiny_model, random_lora, ids)
    for outtype in ("f16", "bf16", "q8_0"):
        out, result, _ = _export(tmp_path, f"m-{outtype}", "gguf", {"outtype": outtype}, random_lora, tiny_model)
        assert result["primary"] == result["files"][0] and result["files"][1] == "README.md"
        reader = gguf.GGUFReader(str(out / result["primary"]))
        fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
        assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
        assert fields["adapter.lora.alpha"] == 16.0 and fields["general.architecture"] == "llama"
        names = {t.name: t.tensor_type.name for t in reader.tensors}
        assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
        assert len(names) == 2 * 7 * 2  # 7 linear modules per layer, 2 layers, a and b
        want = outtype.upper()
        assert names["blk.0.attn_q.weight.lora_a"] == want  # rows of 64: quantisable
        assert names["blk.0.attn_q.weight.lora_b"] == ("F16" if outtype == "q8_0" else want)  # rows of rank 8
        got = _llama_greedy(base, out / result["primary"], ids)  # llama.cpp applies each output type
        assert got[:4] == tuned[:4] and got != plain, outtype


def test_merged_model_as_gguf_answers_like_base_plus_lora(tiny_model, random_lora, tmp_path):
    from transformers import AutoTokenizer

    out, result, _ = _export(tmp_path, "mm", "gguf", {"what": "merged", "model_outtype": "f32"}, random_lora, tiny_model)
    assert result["files"] == ["mm-merged-f32.gguf", "README.md"] and result["primary"] == "mm-merged-f32.gguf"
    ids = AutoTokenizer.from_pretrained(str(tiny_model))(PROMPTS[0], add_special_tokens=False)["input_ids"]
    assert _llama_greedy(out / result["primary"], None, ids) == _peft_greedy(tiny_model, random_lora, ids)


def test_what_llama_cpp_cannot_apply_is_refused_with_the_reason(tiny_model, random_lora, tmp_path):
    from lora_factory.plugins.text.export import resolve

    def spec(adapter, base=tiny_model, target="gguf"):
        return {"adapter": str(adapter), "base_model": str(base), "target": target, "params": {}, "output_name": "x"}

    saved = tmp_path / "saved"
    shutil.copytree(random_lora, saved)
    config = json.loads((saved / "adapter_config.json").read_text())
    (saved / "adapter_config.json").write_text(json.dumps(dict(config, modules_to_save=["lm_head"])))
    with pytest.raises(LoRAFactoryError) as err:
        resolve(spec(saved))
    assert err.value.code == "EXPORT_UNSUPPORTED" and "lm_head" in err.value.message_en
    assert resolve(dict(spec(saved), params={"what": "merged"}))["params"]["what"] == "merged"  # merging works
    embed = tmp_path / "embed"
    shutil.copytree(random_lora, embed)
    (embed / "adapter_config.json").write_text(json.dumps(dict(config, target_modules=["q_proj", "embed_tokens"])))
    with pytest.raises(LoRAFactoryError, match="embed"):
        resolve(spec(embed))
    other = tmp_path / "gpt2"
    shutil.copytree(tiny_model, other)
    model_config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(dict(model_config, architectures=["GPT2LMHeadModel"])))
    with pytest.raises(LoRAFactoryError) as err:
        resolve(spec(random_lora, other))
    assert err.value.code == "EXPORT_UNSUPPORTED" and "GPT2LMHeadModel" in err.value.message_en
    with pytest.raises(LoRAFactoryError) as err:
        resolve(dict(spec(random_lora), params={"outtype": "q4_0"}))
    assert err.value.code == "INVALID_EXPORT_PARAMS" and err.value.detail["field"] == "outtype"


def test_ollama_export_writes_a_modelfile_whose_template_renders_the_models_prompts(tiny_model, random_lora, tmp_path):
    from transformers import AutoTokenizer

    from lora_factory.plugins.text.go_template import render
    from lora_factory.plugins.text.ollama import SAMPLE_CONVERSATIONS

    out, result, _ = _export(tmp_path, "o", "ollama", {"outtype": "f16"}, random_lora, tiny_model)
    modelfile = (out / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./tiny-chat-f16.gguf" in modelfile and "ADAPTER ./random-lora-lora-f16.gguf" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert result["commands"][0].startswith("ollama create o -f Modelfile") and result["warnings"] == []
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    extra = [[{"role": "user", "content": "質問?"}, {"role": "assistant", "content": "答え"},
              {"role": "user", "content": "もう一つ"}, {"role": "assistant", "content": "はい"},
              {"role": "user", "content": "最後"}]]
    for messages in [*SAMPLE_CONVERSATIONS, *extra]:
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert render(template, messages) == expected
    assert all(check["equal"] for check in result["checks"]["template"])
    assert {f for f in result["files"]} == {"tiny-chat-f16.gguf", "random-lora-lora-f16.gguf", "Modelfile", "README.md"}


def test_a_template_that_does_not_decompose_is_reported_not_guessed():
    from lora_factory.plugins.text.ollama import TemplateNotConvertible, convert_template

    def folds_system_into_user(messages, generation):  # Llama-2 style: the system prompt inside the first turn
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        rest = messages[1:] if system else messages
        text = ""
        for i, m in enumerate(rest):
            if m["role"] == "user":
                text += "[INST] " + (f"<<SYS>>{system}<</SYS>> " if system and i == 0 else "") + m["content"] + " [/INST]"
            else:
                text += m["content"] + "</s>"
        return text

    with pytest.raises(TemplateNotConvertible):
        convert_template(folds_system_into_user)


def test_go_template_subset_renderer():
    from lora_factory.plugins.text.go_template import GoTemplateError, literal, render

    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    template = ('{{- range .Messages }}\n  {{ if eq .Role "system" }}[{{ .Content }}]{{ else if eq .Role "user" }}'
                '<{{ .Content }}>{{ else }}?{{ end -}}\n  {{ end }}' + literal("{{x}}"))
    assert render(template, messages) == "\n  [S]\n  <U>{{x}}"  # "-}}" trims the text after the if's end
    with pytest.raises(GoTemplateError):
        render("{{ .Prompt }}", messages)
    with pytest.raises(GoTemplateError):
        render("{{ range .Messages }}", messages)


def test_vllm_export_copies_the_peft_folder_and_warns_about_what_vllm_refuses(tiny_model, random_lora, tmp_path):
    from lora_factory.plugins.text.export import vllm_warnings

    out, result, spec = _export(tmp_path, "v", "vllm", {}, random_lora, tiny_model)
    assert spec["warnings"] == [] and (out / "random-lora" / "adapter_model.safetensors").is_file()
    assert "--enable-lora --lora-modules random-lora=./random-lora" in result["commands"][0]
    config = json.loads((random_lora / "adapter_config.json").read_text())
    codes = [w["code"] for w in vllm_warnings(dict(config, r=64, modules_to_save=["lm_head"], use_dora=True))]
    assert codes == ["VLLM_RANK_TOO_HIGH", "VLLM_MODULES_TO_SAVE", "VLLM_DORA"]
    assert "--max-lora-rank 64" in vllm_warnings(dict(config, r=40))[0]["message"]
    assert vllm_warnings(dict(config, target_modules=["q_proj", "embed_tokens"]))[0]["code"] == "VLLM_TARGET_MODULES"
