"""Full-text search over message text and conversation titles: FTS5 tables kept in step by
triggers on SQLite; expression GIN indexes on PostgreSQL."""

from __future__ import annotations

from django.db import migrations

SQLITE = [
    """CREATE VIRTUAL TABLE chat_message_fts USING fts5(
        content, content='chat_message', content_rowid='id', tokenize='unicode61')""",
    """CREATE TRIGGER chat_message_fts_insert AFTER INSERT ON chat_message BEGIN
        INSERT INTO chat_message_fts(rowid, content) VALUES (new.id, new.content); END""",
    """CREATE TRIGGER chat_message_fts_delete AFTER DELETE ON chat_message BEGIN
        INSERT INTO chat_message_fts(chat_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content); END""",
    """CREATE TRIGGER chat_message_fts_update AFTER UPDATE OF content ON chat_message BEGIN
        INSERT INTO chat_message_fts(chat_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO chat_message_fts(rowid, content) VALUES (new.id, new.content); END""",
    """CREATE VIRTUAL TABLE chat_conversation_fts USING fts5(
        title, content='chat_conversation', content_rowid='id', tokenize='unicode61')""",
    """CREATE TRIGGER chat_conversation_fts_insert AFTER INSERT ON chat_conversation BEGIN
        INSERT INTO chat_conversation_fts(rowid, title) VALUES (new.id, new.title); END""",
    """CREATE TRIGGER chat_conversation_fts_delete AFTER DELETE ON chat_conversation BEGIN
        INSERT INTO chat_conversation_fts(chat_conversation_fts, rowid, title)
        VALUES ('delete', old.id, old.title); END""",
    """CREATE TRIGGER chat_conversation_fts_update AFTER UPDATE OF title ON chat_conversation
        BEGIN
        INSERT INTO chat_conversation_fts(chat_conversation_fts, rowid, title)
        VALUES ('delete', old.id, old.title);
        INSERT INTO chat_conversation_fts(rowid, title) VALUES (new.id, new.title); END""",
]
SQLITE_REVERSE = [
    "DROP TABLE IF EXISTS chat_message_fts",
    "DROP TABLE IF EXISTS chat_conversation_fts",
]
POSTGRES = [
    """CREATE INDEX chat_message_content_fts ON chat_message
        USING gin (to_tsvector('simple'::regconfig, COALESCE(content, '')))""",
    """CREATE INDEX chat_conversation_title_fts ON chat_conversation
        USING gin (to_tsvector('simple'::regconfig, COALESCE(title, '')))""",
]
POSTGRES_REVERSE = [
    "DROP INDEX IF EXISTS chat_message_content_fts",
    "DROP INDEX IF EXISTS chat_conversation_title_fts",
]


def _run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def apply(apps, schema_editor):  # type: ignore[no-untyped-def]
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        )
    ]
