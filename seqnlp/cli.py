"""The ``seqnlp`` command: train, evaluate, predict."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from seqnlp.config import ArgumentParser
from seqnlp.errors import ConfigError, SeqNLPError


def _evaluate(argv):
    parser = ArgumentParser(prog="seqnlp evaluate", description="Score a trained model on test data; prints the metrics JSON.")
    parser.add_argument("model_dir")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--test-file")
    source.add_argument("--dataset")
    parser.add_argument("--dataset-config")
    parser.add_argument("--split", help="the DatasetDict split to score (default: test); a data file or single Dataset is scored whole")
    parser.add_argument("--output-dir", help="also write metrics.json and report.md here")
    parser.add_argument("--device", default="auto", help="auto (default): the GPU if torch sees one, else cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a saved data or decoding setting (e.g. tag_column=3, length_penalty=1.0)")
    args = parser.parse_args(argv)
    from seqnlp.tasks import load_model_dir
    from seqnlp.train import pick_device

    overrides = dict(_parse_override(item) for item in args.set)
    # The evaluation data replaces the training data sources of the saved config.
    overrides.update({"train_file": None, "dev_file": None, "test_file": args.test_file, "dataset": args.dataset,
                      "dataset_config": args.dataset_config, "test_split": args.split or "test"})
    task, model = load_model_dir(args.model_dir, device=pick_device(args.device), overrides=overrides)
    examples = _evaluation_examples(task, args)
    scores = task.evaluate(model, examples)
    metrics = {"task": task.name, "test": {k: v for k, v in scores.items() if not k.startswith("_")}}
    if args.output_dir:
        from seqnlp.report import write_report

        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        write_report(args.output_dir, task.name, metrics, task.report_sections({"test": scores}, args.output_dir),
                     task.data_summary({"test": examples}), task.metric)
    print(json.dumps(metrics, indent=2))


def _evaluation_examples(task, args) -> list:
    """The examples ``seqnlp evaluate`` scores: the test file, a whole single-split dataset, or a named split."""
    if args.dataset:
        from seqnlp.data import hf

        loaded = hf.load(args.dataset, args.dataset_config)
        if hf.is_single_split(args.dataset, args.dataset_config):
            if args.split is not None:
                raise ConfigError(f"--split {args.split}: {args.dataset} is a single split (a data file or Dataset); "
                                  "--split names a split of a DatasetDict")
            return task.read_hf(loaded, args.dataset)
        split = args.split or "test"
        if split not in loaded:
            raise ConfigError(f"dataset has no split {split!r} (splits: {', '.join(loaded)})", args.dataset)
    return task.read("test")


def _parse_override(item: str):
    key, sep, value = item.partition("=")
    if not sep:
        raise SeqNLPError(f"--set expects KEY=VALUE, not {item!r}")
    import yaml

    try:
        return key.replace("-", "_"), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: invalid value {value[:60]!r} ({str(err).splitlines()[0]})") from None


def _predict(argv):
    parser = ArgumentParser(prog="seqnlp predict", description="One input per line in, one output per line out.")
    parser.add_argument("model_dir")
    parser.add_argument("input", nargs="?", default="-", help="file of inputs, one per line ('-' or nothing: stdin)")
    parser.add_argument("--device", default="auto", help="auto (default): the GPU if torch sees one, else cpu")
    parser.add_argument("--beam", type=int, help="translate: beam width (>= 1; default: the model's)")
    parser.add_argument("--max-chars", type=int, default=200, help="textgen: characters to generate (>= 0; default: 200)")
    parser.add_argument("--temperature", type=float, default=1.0, help="textgen: sampling temperature (> 0; default: 1.0)")
    parser.add_argument("--top-k", type=int, default=0, help="textgen: sample from the k likeliest characters (>= 0; 0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="textgen: nucleus sampling mass (0 < p <= 1; default: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="textgen: sampling seed (0 <= seed < 2**32; default: 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a saved decoding setting (e.g. n_best=3, length_penalty=1.0, coverage_penalty=0)")
    parser.add_argument("--buffer-lines", type=int, metavar="N",
                        help="read N inputs, write their outputs, repeat (default: 1 from a terminal, else 1000)")
    args = parser.parse_args(argv)
    import torch

    from seqnlp.errors import ConfigError, iter_text_lines
    from seqnlp.tasks import load_model_dir
    from seqnlp.train import pick_device

    interactive = args.input == "-" and sys.stdin.isatty()
    buffer_lines = args.buffer_lines if args.buffer_lines is not None else 1 if interactive else 1000
    if buffer_lines < 1:
        raise ConfigError(f"--buffer-lines must be >= 1, not {args.buffer_lines}")
    check_decoding_options(args)
    overrides = dict(_parse_override(item) for item in args.set)
    task, model = load_model_dir(args.model_dir, device=pick_device(args.device), overrides=overrides)
    options = {k: v for k, v in vars(args).items() if k not in ("model_dir", "input", "device", "set", "buffer_lines")}
    options["generator"] = torch.Generator().manual_seed(args.seed)  # textgen: one random stream for the whole input, however it is buffered
    lines = iter_text_lines(args.input)
    while chunk := list(itertools.islice(lines, buffer_lines)):
        for line in task.predict_lines(model, chunk, options):
            print(line)
        sys.stdout.flush()


def check_decoding_options(args) -> None:
    """Refuse decoding options that would crash or silently mean something else."""
    import math

    checks = {
        "--beam": args.beam is None or args.beam >= 1,
        "--max-chars": args.max_chars >= 0,
        "--temperature": math.isfinite(args.temperature) and args.temperature > 0,
        "--top-k": args.top_k >= 0,
        "--top-p": math.isfinite(args.top_p) and 0 < args.top_p <= 1,
        "--seed": 0 <= args.seed < 2**32,
    }
    for flag, ok in checks.items():
        if not ok:
            raise ConfigError(f"invalid value for {flag}: {getattr(args, flag[2:].replace('-', '_'))!r} (see seqnlp predict --help)")


def _train(argv):
    if not argv or argv[0].startswith("-"):
        from seqnlp.tasks import TASKS

        raise SeqNLPError(f"usage: seqnlp train TASK [options]; TASK is one of {', '.join(sorted(TASKS))}")
    from seqnlp.run import train

    train(argv[0], argv[1:])


def _diagnose(argv):
    from seqnlp.diagnose import main as diagnose

    diagnose(argv)


COMMANDS = {"train": _train, "evaluate": _evaluate, "predict": _predict, "diagnose": _diagnose}


def run_cli(function, argv) -> int:
    """Call ``function(argv)``; report input errors as one line and exit 2, never a traceback."""
    try:
        function(argv)
    except SeqNLPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine's, not the input's: a full disk, a vanished folder; still one line
        if isinstance(err, BrokenPipeError):
            return 0
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: seqnlp {train,evaluate,predict,diagnose} ...\n"
              "  seqnlp train TASK [options]        train, evaluate and report (TASK: ner, sentiment, translate, textgen)\n"
              "  seqnlp evaluate MODEL_DIR --test-file F | --dataset D [--split S]\n"
              "  seqnlp predict MODEL_DIR [FILE|-]\n"
              "  seqnlp diagnose gradients [--output-dir DIR]", file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return run_cli(COMMANDS[argv[0]], argv[1:])


def recipe(task_name: str, default_data: dict) -> int:
    """Entry point of ``recipes/<task>.py``: the sample data in ``data/`` unless data is given.

    ``--diagnose-gradients`` runs ``seqnlp diagnose gradients`` instead (into ``--output-dir``).
    """
    from seqnlp.run import train

    argv = sys.argv[1:]
    if "--diagnose-gradients" in argv:
        argv.remove("--diagnose-gradients")
        return run_cli(_diagnose, ["gradients", *argv])
    return run_cli(lambda args: train(task_name, args, default_data=default_data, prog=f"recipes/{task_name}.py"), argv)


if __name__ == "__main__":
    sys.exit(main())
