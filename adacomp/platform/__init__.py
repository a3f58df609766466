"""The search as a service: config, strategies, tracking, jobs and the CLI.

The only package that imports Ray and MLflow (lazily, where they are used).
"""
