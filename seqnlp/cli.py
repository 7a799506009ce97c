"""The ``seqnlp`` command: train, evaluate, predict."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from seqnlp.config import ArgumentParser
from seqnlp.errors import ConfigError, SeqNLPError, missing_training_package


def add_data_arguments(parser, file_flag: str, file_help: str, split_help: str, required: bool = True) -> None:
    """The data a command scores or fits on: a file (``file_flag``) or a HuggingFace dataset and its split."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument(file_flag, help=file_help)
    source.add_argument("--dataset", help="a HuggingFace dataset: hub name, save_to_disk folder or data file")
    parser.add_argument("--dataset-config", help="the dataset's configuration name")
    parser.add_argument("--split", help=split_help)


def _evaluate(argv):
    parser = ArgumentParser(
        prog="seqnlp evaluate", description="Score a trained model on test data; prints the metrics JSON."
    )
    parser.add_argument("model_dir")
    add_data_arguments(
        parser, "--test-file", "the data file to score",
        "the DatasetDict split to score (default: test); a data file or single Dataset is scored whole",
    )  # fmt: skip
    parser.add_argument("--output-dir", help="also write metrics.json and report.md here")
    parser.add_argument("--device", default="auto", help="auto (default): the GPU if torch sees one, else cpu")
    parser.add_argument(
        "--bootstrap",
        type=int,
        metavar="N",
        help="resamples for each score's 95%% bootstrap interval (default: the model's setting, 1000); 0: none",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a saved data or decoding setting (e.g. tag_column=3, length_penalty=1.0)",
    )
    args = parser.parse_args(argv)
    from seqnlp import api

    overrides = dict(_parse_override(item) for item in args.set)
    if args.bootstrap is not None:
        overrides["bootstrap"] = args.bootstrap
    model = api.load(args.model_dir, device=args.device, **overrides)
    data = {"dataset": args.dataset} if args.dataset else {"test_file": args.test_file}
    metrics, scores, examples = api.score(model, **data, split=args.split, dataset_config=args.dataset_config)
    if args.output_dir:
        from seqnlp.evaluation.report import write_evaluation

        write_evaluation(args.output_dir, model.task, metrics, scores, examples)
    print(json.dumps(metrics, indent=2))


def _compare(argv):
    parser = ArgumentParser(
        prog="seqnlp compare",
        description="Score two or more models on the same data: each score with its 95% bootstrap interval, and "
        "each pair's difference with its paired-bootstrap interval and approximate-randomization p-value "
        "(prints JSON).",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="model folders, run folders or hf://ORG/NAME")
    add_data_arguments(
        parser, "--test-file", "the data to score model folders on (folders of seqnlp repeat need none)",
        "the DatasetDict split to score (default: test); for folders of seqnlp repeat, the recorded scores "
        "compared: dev (default) or test",
        required=False,
    )  # fmt: skip
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    parser.add_argument(
        "--trials", type=int, default=10_000, metavar="N", help="approximate-randomization trials (default 10000)"
    )
    parser.add_argument("--device", default="auto", help="auto (default): the GPU if torch sees one, else cpu")
    args = parser.parse_args(argv)
    from seqnlp import api

    data = {"dataset": args.dataset} if args.dataset else {"test_file": args.test_file}
    result = api.compare(
        args.models, **data, split=args.split, dataset_config=args.dataset_config, resamples=args.bootstrap,
        trials=args.trials, device=args.device,
    )  # fmt: skip
    print(json.dumps(result, indent=2))


def _calibrate(argv):
    parser = ArgumentParser(
        prog="seqnlp calibrate",
        description="Fit a model's temperature on held-out data, so that its probabilities match how often it is "
        "right (no prediction changes), and write it into the model folder (prints the calibration JSON).",
    )
    parser.add_argument("model_dir", help="a model folder, run folder or hf://ORG/NAME (with --output-dir)")
    add_data_arguments(
        parser, "--dev-file", "held-out data the model was not trained on",
        "the DatasetDict split to fit on (default: validation)",
    )  # fmt: skip
    parser.add_argument("--output-dir", help="write a calibrated copy of the model folder here instead")
    parser.add_argument("--device", default="auto", help="auto (default): the GPU if torch sees one, else cpu")
    args = parser.parse_args(argv)
    from seqnlp import api

    result = api.calibrate(
        args.model_dir, dev_file=args.dev_file, dataset=args.dataset, split=args.split,
        dataset_config=args.dataset_config, output_dir=args.output_dir, device=args.device,
    )  # fmt: skip
    print(json.dumps(result, indent=2))


def _demo(argv):
    from seqnlp.tasks import task_names

    parser = ArgumentParser(
        prog="seqnlp demo",
        description="Train every task on the sample shipped with seqnlp (1.5 minutes each), evaluate it on the "
        "sample's test file and write its report: what the recipes do in a clone, anywhere seqnlp is installed.",
    )
    parser.add_argument(
        "--output-dir", default="seqnlp-demo", help="a folder per task inside it (default: seqnlp-demo)"
    )
    parser.add_argument("--tasks", default=",".join(task_names()), help="comma-separated (default: every task)")
    parser.add_argument("--max-minutes", type=float, default=1.5, help="training budget per task (default 1.5)")
    args = parser.parse_args(argv)
    from seqnlp.tasks.base import get_task
    from seqnlp.training.run import train

    chosen = [name.strip() for name in args.tasks.split(",") if name.strip()]
    for name in chosen:
        if get_task(name).sample_data() is None:
            raise ConfigError(f"the {name} task ships no sample to train on")
    for name in chosen:
        folder = Path(args.output_dir) / name
        print(f"== {name}: training on its sample into {folder}", flush=True)
        train(name, ["--output-dir", str(folder), "--overwrite", "--quiet", "--max-minutes", str(args.max_minutes)])
    print(f"reports: {', '.join(str(Path(args.output_dir) / name / 'report.md') for name in chosen)}")


def _parse_override(item: str):
    key, sep, value = item.partition("=")
    if not sep:
        raise SeqNLPError(f"--set expects KEY=VALUE, not {item!r}")
    import yaml

    try:
        return key.replace("-", "_"), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: invalid value {value[:60]!r} ({str(err).splitlines()[0]})") from None


def predict_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="seqnlp predict", description="One input per line in, one output per line out.")
    parser.add_argument("model_dir")
    parser.add_argument("input", nargs="?", default="-", help="file of inputs, one per line ('-' or nothing: stdin)")
    parser.add_argument("--device", default="auto", help="auto (default): the GPU if torch sees one, else cpu")
    parser.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="auto (default): onnx for a folder of `seqnlp export` (onnxruntime on the CPU, no torch), else torch",
    )
    parser.add_argument("--beam", type=int, help="translate: beam width (>= 1; default: the model's)")
    parser.add_argument(
        "--max-chars", type=int, default=200, help="textgen: characters to generate (>= 0; default: 200)"
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="textgen: sampling temperature (> 0; default: 1.0)"
    )
    parser.add_argument(
        "--top-k", type=int, default=0, help="textgen: sample from the k likeliest characters (>= 0; 0: all)"
    )
    parser.add_argument(
        "--top-p", type=float, default=1.0, help="textgen: nucleus sampling mass (0 < p <= 1; default: 1.0)"
    )
    parser.add_argument("--seed", type=int, default=0, help="textgen: sampling seed (0 <= seed < 2**32; default: 0)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a saved decoding setting (e.g. n_best=3, length_penalty=1.0, coverage_penalty=0)",
    )
    parser.add_argument(
        "--buffer-lines",
        type=int,
        metavar="N",
        help="read N inputs, write their outputs, repeat (default: 1 from a terminal, else 1000)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default): one line per input (ner: token/TAG ...; sentiment: label<TAB>probability; "
        "textgen: the continuation with a newline written \\n and a backslash \\\\); json: one JSON "
        "object per input (JSON Lines); conll (ner): token<TAB>tag lines, a blank line after each input",
    )
    parser.add_argument(
        "--pretokenized",
        action="store_true",
        help="ner: the input is already tokenized (tokens between spaces); default: raw text, tokenized as "
        "CoNLL-2003 is",
    )
    return parser


def _predict(argv):
    args = predict_parser().parse_args(argv)
    from seqnlp.data.text import iter_text_lines
    from seqnlp.errors import ConfigError

    interactive = args.input == "-" and sys.stdin.isatty()
    buffer_lines = args.buffer_lines if args.buffer_lines is not None else 1 if interactive else 1000
    if buffer_lines < 1:
        raise ConfigError(f"--buffer-lines must be >= 1, not {args.buffer_lines}")
    check_decoding_options(args)
    overrides = dict(_parse_override(item) for item in args.set)
    task, predict, generator = _predictor(args, overrides)
    if args.format not in task.output_formats:
        raise ConfigError(
            f"--format {args.format} is not for {task.name} models (use {' or '.join(task.output_formats)})"
        )
    options = {
        k: v
        for k, v in vars(args).items()
        if k not in ("model_dir", "input", "device", "runtime", "set", "buffer_lines", "format")
    }
    options["generator"] = generator  # textgen: one random stream for the whole input, however it is buffered
    lines = iter_text_lines(args.input)
    while chunk := list(itertools.islice(lines, buffer_lines)):
        predictions = predict([task.input_from_line(line) for line in chunk], options)
        for prediction in predictions:
            print(format_prediction(prediction, args.format), end="" if args.format == "conll" else "\n")
        truncated = sum(getattr(p, "truncated", False) for p in predictions)
        # the model reads the first max_length tokens of a text, as it was trained: say so rather than cut unannounced
        if truncated:
            print(
                f"warning: {truncated} of these {len(chunk)} texts are longer than max_length "
                f"({task.config.max_length} tokens); "
                f"their labels read only the first {task.config.max_length} (--set max_length=N reads more)",
                file=sys.stderr,
            )
        sys.stdout.flush()


def _predictor(args, overrides: dict):
    """``(task, predict(inputs, options), random stream)`` for ``--runtime``: the task (or the ONNX runner, which
    offers the same ``name``, ``output_formats``, ``input_from_line`` and ``config``) and how it predicts."""
    from seqnlp.serving import is_export
    from seqnlp.storage.hub import model_directory

    exported = is_export(model_directory(args.model_dir))
    runtime = args.runtime if args.runtime != "auto" else "onnx" if exported else "torch"
    if runtime == "onnx":
        if not exported:
            raise ConfigError(
                "--runtime onnx: not a folder of `seqnlp export` (no onnx.json); "
                "`seqnlp export MODEL_DIR OUT_DIR` makes one",
                args.model_dir,
            )
        from seqnlp.serving.runtime import load_runner

        runner = load_runner(args.model_dir, overrides)
        return runner, runner.predict, runner.random_stream(args.seed)
    if exported:
        raise ConfigError("an ONNX export runs with --runtime onnx (or auto), not torch", args.model_dir)
    import torch

    from seqnlp.tasks.base import load_model_dir
    from seqnlp.training.trainer import pick_device

    task, model = load_model_dir(args.model_dir, device=pick_device(args.device), overrides=overrides)
    return task, lambda inputs, options: task.predict(model, inputs, options), torch.Generator().manual_seed(args.seed)


def _export(argv):
    parser = ArgumentParser(
        prog="seqnlp export",
        description="Write a model as ONNX graphs for onnxruntime; `seqnlp predict OUT_DIR` and `seqnlp.load(OUT_DIR)` "
        "run them without torch.",
    )
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the only one so far)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it holds files")
    args = parser.parse_args(argv)
    from seqnlp.serving.export import export

    manifest = export(args.model_dir, args.out_dir, overwrite=args.overwrite)
    print(json.dumps({"out_dir": args.out_dir, "task": manifest["task"], "graphs": sorted(manifest["graphs"])}))


FORMATS = ("text", "json", "conll")


def format_prediction(prediction, form: str) -> str:
    if form == "json":
        return json.dumps(prediction.to_dict(), ensure_ascii=False)
    if form == "conll":
        return prediction.to_conll() + "\n"
    return prediction.to_text()


def check_decoding_options(args) -> None:
    """Refuse decoding options that would crash or silently mean something else (the checks of the Python API)."""
    from seqnlp.predictions import OPTION_CHECKS

    for name in ("beam", "max_chars", "temperature", "top_k", "top_p", "seed"):
        value = getattr(args, name)
        if value is not None and not OPTION_CHECKS[name](value):
            raise ConfigError(f"invalid value for --{name.replace('_', '-')}: {value!r} (see seqnlp predict --help)")


def _train(argv):
    if not argv or argv[0].startswith("-"):
        from seqnlp.tasks import task_names

        raise SeqNLPError(f"usage: seqnlp train TASK [options]; TASK is one of {', '.join(task_names())}")
    from seqnlp.training.run import train

    train(argv[0], argv[1:])


def _repeat(argv):
    from seqnlp.training.repeat import main as repeat

    repeat(argv)


def _tune(argv):
    from seqnlp.training.tune import main as tune

    tune(argv)


def _diagnose(argv):
    from seqnlp.training.diagnose import main as diagnose

    diagnose(argv)


def _serve(argv):
    from seqnlp.serving.server import main as serve

    serve(argv)


def _push(argv):
    parser = ArgumentParser(prog="seqnlp push", description="Upload a model folder to the HuggingFace Hub.")
    parser.add_argument("model_dir")
    parser.add_argument("repo_id", help="ORG/NAME (created if it does not exist; HF_TOKEN or `hf auth login`)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="the branch to commit to (created if needed; default: main)")
    parser.add_argument("--message", help="the commit message")
    args = parser.parse_args(argv)
    from seqnlp.storage.folders import existing_directory
    from seqnlp.storage.hub import push
    from seqnlp.tasks.base import load_model_dir

    load_model_dir(args.model_dir)  # what a user will download must load: every file is checked first
    folder = existing_directory(Path(args.model_dir)) or Path(args.model_dir)
    print(push(folder, args.repo_id, args.private, args.revision, args.message))


COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "compare": _compare,
    "calibrate": _calibrate,
    "demo": _demo,
    "repeat": _repeat,
    "tune": _tune,
    "predict": _predict,
    "serve": _serve,
    "push": _push,
    "export": _export,
    "diagnose": _diagnose,
}


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
    except ModuleNotFoundError as err:
        message = missing_training_package(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        from seqnlp.version import __version__

        print(f"seqnlp {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        from seqnlp.tasks import task_names

        print(
            "usage: seqnlp {demo,train,repeat,tune,evaluate,compare,calibrate,predict,serve,push,export,diagnose} "
            "... | seqnlp --version\n"
            "  seqnlp demo [--output-dir DIR]     every task trained on its bundled sample, with its report\n"
            f"  seqnlp train TASK [options]        train, evaluate and report (TASK: {', '.join(task_names())}; "
            "no data: its sample)\n"
            "  seqnlp repeat TASK --seeds 1,2,3 --output-dir OUT [options]   one run per seed, and their summary\n"
            "  seqnlp tune TASK --trials N --output-dir OUT [--trial-minutes M] [options]   search settings (Optuna)\n"
            "  seqnlp evaluate MODEL_DIR --test-file F | --dataset D [--split S] [--bootstrap N]\n"
            "  seqnlp compare MODEL_A MODEL_B [...] --test-file F | --dataset D   paired tests between models\n"
            "  seqnlp calibrate MODEL_DIR --dev-file F | --dataset D [--output-dir OUT]   fit its temperature\n"
            "  seqnlp predict MODEL_DIR [FILE|-] [--format text|json|conll] [--runtime auto|torch|onnx]\n"
            "  seqnlp serve MODEL_DIR [--host 127.0.0.1] [--port 8080]   HTTP JSON API: POST /predict, GET /health, "
            "GET /info\n"
            "  seqnlp push MODEL_DIR ORG/NAME [--private] [--revision BRANCH]   upload to the HuggingFace Hub\n"
            "  seqnlp export MODEL_DIR OUT_DIR [--format onnx]   ONNX graphs that onnxruntime runs without torch\n"
            "  seqnlp diagnose gradients [--output-dir DIR] [--quick]\n"
            "MODEL_DIR may be hf://ORG/NAME[@REVISION]: downloaded into the HuggingFace cache (HF_HUB_OFFLINE=1: "
            "the cache only)",
            file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout,
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return run_cli(COMMANDS[argv[0]], argv[1:])


def recipe(task_name: str) -> int:
    """Entry point of ``recipes/<task>.py``: the task's sample (``data/<task>``) unless data is given.

    ``--diagnose-gradients`` runs ``seqnlp diagnose gradients`` instead (into ``--output-dir``).
    """
    from seqnlp.training.run import train

    argv = sys.argv[1:]
    if "--diagnose-gradients" in argv:
        argv.remove("--diagnose-gradients")
        return run_cli(_diagnose, ["gradients", *argv])
    return run_cli(lambda args: train(task_name, args, prog=f"recipes/{task_name}.py"), argv)


if __name__ == "__main__":
    sys.exit(main())
