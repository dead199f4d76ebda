"""The pipeline's services: generator, analysis, notification and the dashboard."""
