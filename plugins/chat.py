"""Chat rendering shared by the plugins that train on conversations (SFT) and on preferences (reward
model, DPO, PPO): token ids and a target mask from the chat template, located by token spans."""

from __future__ import annotations

from typing import Any

import numpy as np

from corpus.plugins.base import PluginInputError


class ChatTemplateError(PluginInputError):
    pass


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

    def render(self, messages: list[dict[str, Any]], generation_prompt: bool = False) -> list[int]:
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        text = self.tok.apply_chat_template(plain, tokenize=False, add_generation_prompt=generation_prompt,
                                            chat_template=self.template)
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
