import json

from seqnlp.diagnose import diagnose_gradients


def test_vanilla_rnn_gradient_vanishes_orders_of_magnitude_faster_than_lstm(tmp_path):
    results = diagnose_gradients(tmp_path, length=60, steps=40, hidden=16)
    saved = json.loads((tmp_path / "gradients.json").read_text())
    assert set(saved) >= {"rnn", "lstm", "gru", "rnn_clipped", "lstm_clipped", "gru_clipped"}
    assert len(saved["rnn"]["grad_norms"]) == 60
    assert results["rnn"]["grad_norms"][0] * 100 < results["lstm"]["grad_norms"][0]
    assert (tmp_path / "gradients.png").exists() and "orders of magnitude" in (tmp_path / "report.md").read_text()
