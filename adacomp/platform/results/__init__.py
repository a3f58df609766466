"""What a search leaves behind: trial records, the front and its hypervolume, MLflow tracking,
plots and the read-only snapshot (`open_search`). Readable without Ray or Optuna.
"""
