"""The ner task: task.py, model.py, export.py, runner.py (see seqnlp.tasks)."""
