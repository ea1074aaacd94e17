"""An Ollama ``Modelfile`` beside a GGUF export: ``FROM`` the GGUF base, ``ADAPTER`` the GGUF LoRA, the
chat template in Ollama's Go-template syntax, the stop tokens and the sampling parameters.

The template is converted *by example*, not by translating Jinja: the model's own chat template is
rendered for a few conversations whose contents are markers, and the text around each marker gives
each role's prefix and suffix, the start of a conversation and the generation prompt. The Go
template built from those pieces is then rendered (with :mod:`go_template`) for other conversations
and must give exactly the same prompt as the Jinja template; a template that does not decompose
this way (one that moves the system prompt into the first user turn, say) is reported and left out
rather than written wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_factory.plugins.text.go_template import literal, render

Renderer = Callable[[list[dict[str, str]], bool], str]  # (messages, add_generation_prompt) -> prompt
_M = {"s": "\u2063SYS\u2063", "u1": "\u2063U1\u2063", "a1": "\u2063A1\u2063", "u2": "\u2063U2\u2063",
      "a2": "\u2063A2\u2063"}


class TemplateNotConvertible(ValueError):
    pass


def _split(text: str, markers: list[str]) -> list[str]:
    pieces, rest = [], text
    for marker in markers:
        if rest.count(marker) != 1:
            raise TemplateNotConvertible(f"the template does not show each message once ({marker!r})")
        before, rest = rest.split(marker)
        pieces.append(before)
    return pieces + [rest]


def _strip_suffix(text: str, suffix: str) -> str:
    if not text.endswith(suffix):
        raise TemplateNotConvertible("the role wrappers are not the same in every turn")
    return text[: len(text) - len(suffix)]


def _strip_prefix(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise TemplateNotConvertible("the role wrappers are not the same in every turn")
    return text[len(prefix):]


def wrappers(render_jinja: Renderer) -> dict[str, str]:
    """Each role's prefix / suffix, the start of a conversation and the generation prompt."""
    s, u1, a1, u2, a2 = (_M[k] for k in ("s", "u1", "a1", "u2", "a2"))
    system, user, assistant = ({"role": r, "content": c} for r, c in (("system", s), ("user", u1), ("assistant", a1)))
    full = _split(render_jinja([system, user, assistant, {"role": "user", "content": u2},
                                {"role": "assistant", "content": a2}], False), [s, u1, a1, u2, a2])
    suffix_a = full[5]
    prefix_u = _strip_prefix(full[3], suffix_a)
    if full[2] != full[4]:
        raise TemplateNotConvertible("the assistant's turn is wrapped differently in later turns")
    head = _split(render_jinja([system, user], False), [s, u1])
    suffix_u = head[2]
    prefix_a = _strip_prefix(full[2], suffix_u)
    suffix_s = _strip_suffix(full[1], prefix_u)
    generation = _strip_prefix(_split(render_jinja([system, user], True), [s, u1])[2], suffix_u)
    no_system = _split(render_jinja([user, assistant], False), [u1, a1])
    start = _strip_suffix(no_system[0], prefix_u)
    prefix_s = _strip_prefix(full[0], start)
    return {"start": start, "system_prefix": prefix_s, "system_suffix": suffix_s, "user_prefix": prefix_u,
            "user_suffix": suffix_u, "assistant_prefix": prefix_a, "assistant_suffix": suffix_a,
            "generation": generation}


def go_template(parts: dict[str, str]) -> str:
    def role(name: str) -> str:
        return f"{literal(parts[name + '_prefix'])}{{{{ .Content }}}}{literal(parts[name + '_suffix'])}"

    return (f"{literal(parts['start'])}{{{{ range .Messages }}}}"
            f"{{{{ if eq .Role \"system\" }}}}{role('system')}"
            f"{{{{ else if eq .Role \"user\" }}}}{role('user')}"
            f"{{{{ else if eq .Role \"assistant\" }}}}{role('assistant')}"
            f"{{{{ end }}}}{{{{ end }}}}{literal(parts['generation'])}")


SAMPLE_CONVERSATIONS = [
    [{"role": "user", "content": "こんにちは"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}, {"role": "user", "content": "2+2?"}],
    [{"role": "system", "content": "丁寧に。"}, {"role": "user", "content": "a\nb"},
     {"role": "assistant", "content": "{{ not a tag }}"}, {"role": "user", "content": "続けて"}],
]


def convert_template(render_jinja: Renderer) -> tuple[str, list[dict[str, Any]]]:
    """The Go template and the checks it passed: for each sample conversation, the Jinja prompt equals
    the Go-rendered one. :raises TemplateNotConvertible: with the first difference."""
    template = go_template(wrappers(render_jinja))
    checks = []
    for messages in SAMPLE_CONVERSATIONS:
        expected, got = render_jinja(messages, True), render(template, messages)
        if expected != got:
            raise TemplateNotConvertible(f"the converted template renders {got!r} where the model's gives {expected!r}")
        checks.append({"messages": len(messages), "equal": True})
    return template, checks


def stop_tokens(parts: dict[str, str] | None, eos: str | None) -> list[str]:
    """The end-of-turn markers: the EOS token and the special-looking text that closes a turn."""
    stops: list[str] = [eos] if eos else []
    for key in ("assistant_suffix", "user_suffix"):
        token = (parts or {}).get(key, "").strip()
        if token and token not in stops and token.startswith("<") and token.endswith(">"):
            stops.append(token)
    return stops


_PARAMETERS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "repetition_penalty": "repeat_penalty"}


def modelfile(base_file: str, adapter_file: str | None, template: str | None, stops: list[str],
              generation_config: dict[str, Any], title: str) -> str:
    lines = [f"# {title}: made by LoRA Factory. Run in this folder: ollama create {title} -f Modelfile",
             f"FROM ./{base_file}"]
    if adapter_file:
        lines.append(f"ADAPTER ./{adapter_file}")
    if template is not None:
        if '"""' in template:
            template = template.replace('"""', '{{ "\\"\\"\\"" }}')
        lines.append(f'TEMPLATE """{template}"""')
    for stop in stops:
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    for key, name in _PARAMETERS.items():
        value = generation_config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lines.append(f"PARAMETER {name} {value}")
    return "\n".join(lines) + "\n"


def read_generation_config(model_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(model_dir) / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("do_sample", True) else {}
