"""One plan -> its metrics: the trial, objectives and feasibility, the by-hand compress job.

No Ray, no MLflow: the layer every other layer of the platform builds on.
"""
