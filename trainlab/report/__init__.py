"""The report: run the course's experiments and write one self-contained HTML page and results.json.

    from trainlab.report import reproduce
    report = reproduce(preset="quick", out="runs/reproduce-quick")   # all experiments
    report.results["summary"]        # held / did not hold / not available, checks passed
    report.html_path                 # runs/reproduce-quick/report.html

The command line: ``trainlab reproduce [NAME ...] [--preset quick|textbook] [--data ...] [--out DIR]``
(:class:`trainlab.report.cli.ReproduceCommand`). results.json follows
:data:`RESULTS_SCHEMA` (docs/results-schema.md).
"""

from trainlab.report._html import figure_png, render_html
from trainlab.report._reproduce import (
    ProgressEvent,
    Report,
    docs_link,
    experiment_entry,
    reproduce,
    resolve_names,
    resolve_preset,
    write_report,
)
from trainlab.report._schema import RESULTS_SCHEMA, SCHEMA_VERSION, consistency_errors, schema_errors, validate_results

__all__ = [
    "reproduce",
    "write_report",
    "render_html",
    "figure_png",
    "Report",
    "ProgressEvent",
    "resolve_preset",
    "resolve_names",
    "docs_link",
    "experiment_entry",
    "RESULTS_SCHEMA",
    "SCHEMA_VERSION",
    "validate_results",
    "schema_errors",
    "consistency_errors",
]
