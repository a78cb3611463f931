"""The persistent gallery (SQLite store) and its in-memory search view (`TemplateMatrix`)."""
