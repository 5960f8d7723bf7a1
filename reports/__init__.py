"""Run summaries (Markdown, static HTML, plots) and comparisons between stored runs."""
