"""Search a user's conversations by title and message text with the database's own
full-text index (FTS5 on SQLite, tsvector + GIN on PostgreSQL), never a LIKE scan."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from apps.chat.models import Conversation, Message

_WORD = re.compile(r"\w+", re.UNICODE)
# Fixed SQL; the match expression is always a parameter.
_MESSAGE_MATCH = (
    "SELECT conversation_id FROM chat_message WHERE id IN "
    "(SELECT rowid FROM chat_message_fts WHERE chat_message_fts MATCH %s)"
)
_TITLE_MATCH = "SELECT rowid FROM chat_conversation_fts WHERE chat_conversation_fts MATCH %s"


def _fts5_query(words: list[str]) -> str:
    """Every word must match, as a prefix: ``"pyth"* "djan"*``. Quoting keeps FTS5's own
    syntax (AND, NEAR, column filters…) out of people's searches."""
    return " ".join(f'"{word}"*' for word in words)


def search_conversations(queryset: QuerySet[Conversation], text: str) -> QuerySet[Conversation]:
    words = _WORD.findall(text)
    if not words:
        return queryset
    by_message: QuerySet[Any, Any] | RawSQL
    by_title: QuerySet[Any, Any] | RawSQL
    if connection.vendor == "sqlite":
        match = _fts5_query(words)
        by_message = RawSQL(_MESSAGE_MATCH, [match])  # noqa: S611 - constant SQL
        by_title = RawSQL(_TITLE_MATCH, [match])  # noqa: S611 - constant SQL
    else:
        query = SearchQuery(
            " & ".join(f"{word}:*" for word in words), config="simple", search_type="raw"
        )
        by_message = (
            Message.objects.annotate(vector=SearchVector("content", config="simple"))
            .filter(vector=query)
            .values("conversation_id")
        )
        by_title = (
            Conversation.objects.annotate(vector=SearchVector("title", config="simple"))
            .filter(vector=query)
            .values("id")
        )
    return queryset.filter(Q(id__in=by_message) | Q(id__in=by_title))
