"""Chat rendering shared by the plugins that train on conversations (SFT) and on preferences (reward
model, DPO, PPO): token ids and a target mask from the chat template, located by token spans."""

from __future__ import annotations

from typing import Any

import numpy as np

from corpus.plugins.base import PluginInputError


class ChatTemplateError(PluginInputError):
    pass


# A conversation every template must render with its text: one that leaves it out (a file path given as
# the template renders as itself) makes every example the same string, and training learns nothing.
_PROBE = [{"role": "user", "content": "corpusforge probe question"},
          {"role": "assistant", "content": "corpusforge probe answer"}]


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot serve as a chat template (None: it can): a Jinja syntax error, or a render
    of a user/assistant exchange without the messages' text. Compiled as transformers compiles it."""
    from jinja2 import TemplateError, TemplateSyntaxError
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        compiled = _compile_jinja_template(template)
    except TemplateSyntaxError as exc:
        return f"not a valid Jinja template: line {exc.lineno}: {exc.message}"
    try:
        text = compiled.render(messages=_PROBE, add_generation_prompt=False, bos_token="", eos_token="")
    except (TemplateError, TypeError, ValueError, KeyError, AttributeError):
        return None  # it refuses this exchange (or wants more): judged on the data's conversations
    if all(m["content"] in text for m in _PROBE):
        return None
    looks_like_a_path = "{" not in template and ("/" in template or template.endswith(".jinja"))
    return ("renders a conversation without its messages' text, so every example would be the same"
            + (": it is a file name, give the template's text (e.g. `chat_template: |` and the template below)"
               if looks_like_a_path else ": render each message's content (e.g. {{ message['content'] }})"))


def check_configured_template(template: str) -> None:
    """The config-time check of a ``data.chat_template`` (every chat plugin's: SFT, reward, DPO, PPO), so
    ``corpus train PLUGIN CONFIG --check`` refuses what the run would: a ValueError naming the problem."""
    problem = template_problem(template) if template else None
    if problem:
        raise ValueError(f"chat_template {problem}")


def chat_template(tokenizer: Any, configured: str = "") -> str | None:
    """The template to render with: the configured one, else the tokenizer's own (None), else the
    project's (``<|role|>content<|end|>``) when the tokenizer has its role tokens."""
    if configured:
        return configured
    if getattr(tokenizer, "chat_template", None):
        return None  # the tokenizer's own
    from corpus.stages.tokenizer import CHAT_TEMPLATE, ROLE_TOKENS

    if all(t in tokenizer.get_vocab() for t in ROLE_TOKENS):
        return CHAT_TEMPLATE
    raise ChatTemplateError("the tokenizer has no chat template: set data.chat_template (a jinja template)")


class ChatEncoder:
    """Token ids and a target mask for a conversation, from the chat template, by token spans."""

    def __init__(self, tokenizer: Any, template: str | None = None, train_on: str = "assistant"):
        self.tok, self.template, self.train_on = tokenizer, template, train_on
        used = template or getattr(tokenizer, "chat_template", None)
        problem = template_problem(used) if isinstance(used, str) and used else None
        if problem:  # every plugin's (reward, DPO, PPO too): a constant render trained to done at log 2
            raise ChatTemplateError(f"the chat template {problem}")

    def render(self, messages: list[dict[str, Any]], generation_prompt: bool = False) -> list[int]:
        from jinja2 import TemplateError

        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        try:
            text = self.tok.apply_chat_template(plain, tokenize=False, add_generation_prompt=generation_prompt,
                                                chat_template=self.template)
        except TemplateError as exc:  # a syntax error, or the template's raise_exception on this conversation
            raise ChatTemplateError(f"the chat template failed on a conversation of roles "
                                    f"{[m['role'] for m in plain]}: {exc}") from exc
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def encode(self, messages: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        full = self.render(messages)
        mask = np.zeros(len(full), dtype=np.uint8)
        if self.train_on == "all":
            mask[:] = 1
            return np.asarray(full, dtype=np.int64), mask
        targets = [k for k, m in enumerate(messages) if m["role"] == "assistant" and m["train"]]
        if self.train_on == "last":
            targets = targets[-1:]
        for k in targets:
            before = self.render(messages[:k], generation_prompt=True)
            upto = self.render(messages[:k + 1])
            if upto[:len(before)] != before or full[:len(upto)] != upto:
                raise ChatTemplateError(
                    f"the chat template is not prefix-stable at message {k}: rendering the conversation up to "
                    "a reply does not give a token prefix of the whole, so reply tokens cannot be located exactly")
            mask[len(before):len(upto)] = 1
        return np.asarray(full, dtype=np.int64), mask
