"""The annotation web app for human feedback (``corpus annotate``): annotators rank a prompt's responses
in a browser; labels are stored in DuckDB and exported in the shared preference formats
(``corpus.plugins.preferences``) that the reward model reads. See docs/annotate.md.

Modules: ``store`` (DuckDB, assignment, labels), ``load`` (Task JSONL in), ``label`` (checks on what
an annotator sends), ``auth`` (tokens, sessions, CSRF), ``app`` (Starlette routes), ``admin`` (the
admin page), ``export`` (Ranking / Pair JSONL out), ``cli``; ``static/`` holds the page, script and
stylesheet the app serves (nothing comes from elsewhere).
"""
