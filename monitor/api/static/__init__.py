"""The dashboard page's files (served by monitor/api/page.py; not Python code)."""
