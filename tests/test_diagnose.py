"""seqnlp diagnose gradients: the measured facts behind vanishing and exploding gradients."""

import json

from seqnlp.training.diagnose import DiagnosisConfig, diagnose_gradients, exploding_run, vanishing_run
from tests.conftest import run_cli


def test_the_gradient_reaching_the_first_step_is_orders_of_magnitude_smaller_in_the_vanilla_rnn():
    config = DiagnosisConfig(length=50, hidden=16, steps=0)
    rnn, lstm = vanishing_run("rnn", config), vanishing_run("lstm", config)
    assert len(rnn["grad_norms"]) == 50
    assert rnn["grad_norms"][0] * 1e6 < lstm["grad_norms"][0]
    assert rnn["grad_norms"][0] * 1e6 < rnn["grad_norms"][-1]  # it vanishes on the way back


def test_after_training_the_lstm_recalls_the_first_token_and_the_vanilla_rnn_does_not():
    config = DiagnosisConfig(length=20, hidden=16, steps=200, lr=1e-2)
    lstm, rnn = vanishing_run("lstm", config), vanishing_run("rnn", config)
    assert lstm["accuracy"] > 0.9
    assert rnn["accuracy"] < 0.3  # chance: 1/8


def test_an_exploding_initialisation_is_bounded_by_clipping_on_most_steps():
    config = DiagnosisConfig(length=50, hidden=16, exploding_steps=20, recurrent_scale=3.0)
    unclipped = exploding_run("rnn", config, clip=None)
    clipped = exploding_run("rnn", config, clip=config.clip_norm)
    assert unclipped["largest_grad_norm"] > 100 * config.clip_norm
    assert unclipped["clipped_steps"] == 0 and clipped["clipped_steps"] > 10
    assert clipped["first_nonfinite_step"] is None
    # Unclipped, the exploded update throws the weights far from where they started; clipped, they stay.
    assert unclipped["weight_norm_after"] > 10 * unclipped["weight_norm_before"]
    assert clipped["weight_norm_after"] < 1.5 * clipped["weight_norm_before"]


def test_the_diagnosis_writes_both_halves_to_json_picture_and_report(tmp_path):
    diagnose_gradients(tmp_path, DiagnosisConfig(length=12, hidden=8, steps=5, exploding_steps=4))
    saved = json.loads((tmp_path / "gradients.json").read_text())
    assert set(saved["vanishing"]) == {"rnn", "lstm", "gru"} and "accuracy" in saved["vanishing"]["gru"]
    assert set(saved["exploding"]) == {"rnn", "rnn_clipped", "lstm", "lstm_clipped"}
    run = saved["exploding"]["rnn_clipped"]
    assert len(run["grad_norms_per_step"]) == len(run["loss"]) == 4
    assert {"clipped_steps", "first_nonfinite_step"} <= set(run)
    assert saved["settings"]["recurrent_scale"] == 3.0
    report = (tmp_path / "report.md").read_text()
    assert "## Vanishing" in report and "## Exploding" in report and "spectral radius 3" in report
    assert (tmp_path / "gradients.png").stat().st_size > 0


def test_the_diagnosis_settings_are_flags_with_ranges(tmp_path):
    code, _, err = run_cli("diagnose", "gradients", "--output-dir", tmp_path, "--recurrent-scale", "-1")
    assert code == 2 and "recurrent_scale" in err and err.count("\n") == 1
