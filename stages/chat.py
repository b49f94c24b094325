"""Render chat and instruction records through a tokenizer's chat template, into ``text``.

Chat records hold a ``messages`` list: read them with ``text_key: messages`` and ``text_json: true``
(the list is kept as its JSON text). Instruction records read their prompt as the text
(``text_key: prompt``) and keep the response (and an optional system prompt) in ``meta``. This
operator turns either into the conversation the model will see, rendered by the tokenizer's own chat
template (or ``chat_template``), with the SFT plugin's field mapping (``messages_key``, ``role_key``,
``content_key``, ``role_map``, ``response_key``, ``system_key``, ``system_prompt``: the same meaning as
in an SFT dataset, docs/training.md) and the same rendering call.

Why an operator and not an export option: rendered first, the conversation is what every later stage
sees and changes (PII redaction, dedup, language ID, quality filters), and ``tokenize`` with
``loss_mask: assistant`` finds the role markers of the template in it, so the SFT plugin trains from
those token shards exactly on what was cleaned. A record that is not a valid conversation (no
assistant reply, unknown role, missing field) is rejected as ``invalid_chat`` with the cause in
``chat_error``, never dropped. Needs the ``train`` extra (transformers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from corpus.operators import FilterOperator, Verdict
from corpus.schema import META, TEXT

REASON = "invalid_chat"


@dataclass
class ChatTemplate(FilterOperator):
    """Render chat (``messages``) or instruction (prompt + response) records through a tokenizer's chat
    template into ``text``; invalid conversations are rejected as ``invalid_chat`` (cause in ``chat_error``)."""

    name = "chat_template"
    version = "1"
    needs = {TEXT: pl.String, META: pl.String}
    adds = {"chat_error": pl.String}
    modifies = (TEXT,)

    tokenizer: str = ""  # a tokenizer folder (or tokenizer.json) with a chat template
    chat_template: str = ""  # a jinja template to use instead of the tokenizer's
    messages_key: str = "messages"
    role_key: str = "role"
    content_key: str = "content"
    role_map: dict[str, str] = field(default_factory=dict)
    prompt_key: str = "prompt"
    response_key: str = "response"
    system_key: str = "system"
    system_prompt: str = ""

    def __post_init__(self) -> None:
        if not self.tokenizer:
            raise ValueError("chat_template needs 'tokenizer': a tokenizer folder whose chat template renders the "
                             "conversations")
        self._tok: Any = None
        self._ds: Any = None

    def setup(self) -> None:
        try:
            from corpus.plugins.models import load_tokenizer
            from corpus.plugins.sft import SFTDataset
        except ImportError as exc:
            raise ValueError("chat_template needs the 'train' extra (pip install 'corpusforge[train]')") from exc
        self._tok = load_tokenizer(self.tokenizer)
        if not (self.chat_template or getattr(self._tok, "chat_template", None)):
            raise ValueError(f"chat_template: the tokenizer {self.tokenizer} has no chat template; set chat_template")
        self._ds = SFTDataset(path="(chat_template operator)", messages_key=self.messages_key, role_key=self.role_key,
                              content_key=self.content_key, role_map=dict(self.role_map),
                              prompt_key=self.prompt_key, response_key=self.response_key, system_key=self.system_key)

    def render(self, text: str, meta: str) -> tuple[str | None, str | None]:
        """(rendered conversation, None) or (None, why it is not a conversation)."""
        from corpus.plugins.sft import SFTDataError, to_messages

        rec = json.loads(meta) if meta else {}
        value: Any = text
        if text[:1] == "[":
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        rec[self.messages_key if isinstance(value, list) else self.prompt_key] = value
        try:
            msgs = to_messages(rec, self._ds, self.system_prompt)
        except SFTDataError as exc:
            return None, str(exc)
        plain = [{"role": m["role"], "content": m["content"]} for m in msgs]
        try:
            return self._tok.apply_chat_template(plain, tokenize=False, chat_template=self.chat_template or None), None
        except Exception as exc:  # noqa: BLE001 - a template error (jinja raise_exception) is this record's fault
            return None, f"the chat template failed: {exc}"

    def filter(self, df: pl.DataFrame) -> Verdict:
        if self._tok is None:
            self.setup()
        done = [self.render(t, m) for t, m in zip(df[TEXT], df[META], strict=True)]
        rendered = pl.Series(TEXT, [r if r is not None else t for (r, _), t in zip(done, df[TEXT], strict=True)],
                             pl.String)
        errors = pl.Series("chat_error", [e for _, e in done], pl.String)
        return Verdict(keep=errors.is_null(), reason=REASON, scores={TEXT: rendered, "chat_error": errors})
