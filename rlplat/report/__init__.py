"""Run reports: ``report.json`` (summary figures), ``report.md`` with PNG plots, and the
``python -m rlplat.report RUN_DIR [RUN_DIR ...]`` command that redraws or overlays them."""

from rlplat.report.summary import format_report, summarize, write_summary

__all__ = ["format_report", "summarize", "write_summary"]
