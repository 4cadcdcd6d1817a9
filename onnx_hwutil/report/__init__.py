"""Views of computed results: tables for people, JSON and CSV for pipelines. Nothing here computes."""
