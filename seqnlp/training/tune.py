"""``seqnlp tune``: a search over a task's settings on Optuna, one process or many sharing a study.

    seqnlp tune TASK --trials N --output-dir OUT [--trial-minutes M] [--max-minutes T] [--space SPACE.yaml]
                     [--pruner median|hyperband|none] [--storage URL --study NAME] [any seqnlp train option]

Each trial is an ordinary run in ``OUT/trials/NNNN/`` trained by ``seqnlp train`` with the trial's settings; the
study (Optuna's TPE sampler, the pruner, every trial's settings and score) lives in ``OUT/study.db`` (SQLite) or in
the database ``--storage`` names, which several processes or machines share: each trial is claimed by one process,
a killed process's trial is marked failed (at once on the same machine, by its stopped heartbeat elsewhere) and
run again, and running the command again continues the study until it holds N finished trials. At the end:
``OUT/best/`` (the best trial's model), ``OUT/best.yaml`` (its settings, with the steps its schedule annealed over,
for ``seqnlp train TASK --config OUT/best.yaml``), ``OUT/summary.json`` and ``OUT/report.md`` with plots.

A diverging trial is failed with its reason and the search goes on; Ctrl-C stops the running trial with a
checkpoint, and the next run of the command resumes it first. With ``--model DIR`` the trials train nothing: each
scores the trained model on the dev data with other decoding settings (the translator's beam and penalties).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

from seqnlp import config as configs
from seqnlp.errors import ConfigError, DivergedError, SeqNLPError
from seqnlp.storage.folders import atomic_directory, existing_directory, write_json, write_text_atomic

KINDS = ("log", "range", "int", "choices")  # log-uniform, uniform, uniform over whole numbers, one of a list
# What tune sets for each trial's run, or what is not a model's setting at all: never searched, never passed.
MANAGED = ("--output-dir", "--resume", "--overwrite", "--max-minutes")
NOT_SEARCHED = {"output_dir", "train_file", "dev_file", "test_file", "dataset", "dataset_config", "init_from",
                "device", "threads", "quiet", "report_to", "seed", "max_minutes", "max_steps"}  # fmt: skip
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120  # a database's trial whose process sent nothing for 2 minutes is failed
WAIT_SECONDS = 2.0  # between looks at other processes' running trials
FINALISTS = 3  # with --seeds: the best trials re-trained with each seed
DECODING_DATA = ("dev_file", "dataset", "dataset_config", "dev_split", "device")  # what --model trials take
# what PostgreSQL and SQLite say when two processes create Optuna's tables at once
CREATION_RACES = ("duplicate key", "already exists", "UNIQUE constraint", "database is locked")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``kind`` (one of KINDS) over ``values`` (two bounds, or the choices)."""

    name: str
    kind: str
    values: tuple


def default_space(config_class) -> dict:
    """Ranges around a task's defaults: learning rate, dropout, word dropout, width, depth and batch size."""
    defaults = {f.name: f.default for f in fields(config_class)}
    lr, dropout, hidden, batch = defaults["lr"], defaults["dropout"], defaults["hidden"], defaults["batch_size"]
    space = {
        "lr": {"log": [lr / 4, lr * 4]},
        "dropout": {"range": [round(max(0.0, dropout - 0.2), 2), round(min(0.7, dropout + 0.2), 2)]},
        "hidden": {"choices": sorted({max(16, hidden // 2), hidden, hidden * 2})},
        "layers": {"choices": [1, 2]},
        "batch_size": {"choices": sorted({max(1, batch // 2), batch, batch * 2})},
    }
    if "word_dropout" in defaults:
        space["word_dropout"] = {"range": [0.0, 0.2]}
    return space


def parse_space(config_class, space: dict, source: str) -> list[Dimension]:
    """The search space's dimensions, each checked against its setting's declared type and range."""
    if not isinstance(space, dict) or not space:
        raise ConfigError("a search space is a mapping of setting: {log|range|int|choices: ...}", source)
    known = {f.name for f in fields(config_class)}
    dimensions = []
    for key, spec in space.items():
        name = str(key).replace("-", "_")
        if name not in known or name in NOT_SEARCHED:
            raise ConfigError(f"{str(key)[:60]!r} is not a setting a search can vary", source)
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"{name}: give one of {', '.join(KINDS)} (e.g. {{log: [1e-4, 1e-2]}})", source)
        kind, values = next(iter(spec.items()))
        dimensions.append(Dimension(name, kind, _checked_values(config_class, name, kind, values, source)))
    return dimensions


def _checked_values(config_class, name: str, kind: str, values, source: str) -> tuple:
    if not isinstance(values, list) or not values or (kind != "choices" and len(values) != 2):
        wanted = "a list of choices" if kind == "choices" else "[low, high]"
        raise ConfigError(f"{name}: {kind} takes {wanted}", source)
    try:
        checked = tuple(configs._coerce(config_class, name, value) for value in values)
        for value in checked:
            configs.check_range(config_class, name, value)
    except ConfigError as err:
        raise ConfigError(f"search space: {err.message}", source) from None
    if kind == "log" and checked[0] <= 0:
        raise ConfigError(f"{name}: a log range needs bounds above 0", source)
    if kind != "choices" and not checked[0] < checked[1]:
        raise ConfigError(f"{name}: the low bound must be below the high one", source)
    if kind in ("log", "range") and not isinstance(checked[0], float):
        raise ConfigError(f"{name} is not a number with a fraction: use int or choices", source)
    if kind == "int" and not isinstance(checked[0], int):
        raise ConfigError(f"{name} is not a whole number: use range, log or choices", source)
    return checked


def sample(trial, dimensions: list[Dimension]) -> dict:
    """The trial's value of each dimension, from Optuna's sampler."""
    settings = {}
    for d in dimensions:
        if d.kind == "choices":
            settings[d.name] = trial.suggest_categorical(d.name, list(d.values))
        elif d.kind == "int":
            settings[d.name] = trial.suggest_int(d.name, d.values[0], d.values[1])
        else:
            settings[d.name] = trial.suggest_float(d.name, d.values[0], d.values[1], log=d.kind == "log")
    return settings


@dataclass
class Search:
    """What every trial of one search shares."""

    task: str
    metric: str
    higher_is_better: bool
    dimensions: list[Dimension]
    fixed: list[str]  # the user's seqnlp train options, the same for every trial
    out: Path
    trials: int
    trial_minutes: float | None
    deadline: float | None  # time.time() after which no trial starts; trials are cut to end by it
    seeds: int | None = None  # re-train the FINALISTS with seeds 1..seeds and choose by the mean
    decoder: object = None  # with --model: the trained seqnlp.api.Model whose decoding settings the trials vary
    dev_data: dict | None = None  # with --model: what api.score reads as the dev data


def objective(search: Search, trial) -> float:
    """Train one trial's run (or, with --model, decode the dev data); its dev score. Optuna records a pruned run as
    pruned and a diverged one (returned as NaN) as failed; bad data or settings fail the search."""
    import optuna

    if surplus(search, trial):
        trial.set_user_attr("surplus", True)  # another process claimed the last trial first
        raise optuna.TrialPruned()
    resumed = resumable_folder(trial)
    folder = resumed or search.out / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("folder", str(folder))
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    settings = sample(trial, search.dimensions)
    again = ""
    if "rerun_of" in trial.user_attrs:
        again = f" (trial {trial.user_attrs['rerun_of']} again{', resumed' if resumed else ''})"
    print(f"trial {trial.number}{again}: {', '.join(f'{k} {v:.4g}' for k, v in settings.items())}", flush=True)
    try:
        if search.decoder is not None:
            value = decoding_trial(search, trial, settings, folder)
        else:
            value = training_trial(search, trial, settings, folder, resumed is not None)
        ended = trial.user_attrs["run"]["ended_by"]
        print(f"trial {trial.number}: dev {search.metric} {value:.4f} ({ended}; {folder})", flush=True)
        return value
    except optuna.TrialPruned:
        print(f"trial {trial.number}: pruned after epoch {trial.user_attrs['run']['epochs']} ({folder})", flush=True)
        raise
    except DivergedError as err:
        trial.set_user_attr("failure", str(err))
        print(f"trial {trial.number} failed: {err}", flush=True)
        return math.nan
    except SeqNLPError as err:  # every trial would fail the same way
        trial.set_user_attr("failure", str(err))
        raise
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        raise


def training_trial(search: Search, trial, settings: dict, folder: Path, resume: bool) -> float:
    import optuna

    from seqnlp.training.run import train

    argv = [*search.fixed, *configs.as_flags(settings), "--output-dir", str(folder)]
    argv.append("--resume" if resume else "--overwrite")
    minutes = trial_budget(search)
    if minutes is not None:
        argv += ["--max-minutes", repr(minutes)]

    def report(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        return trial.should_prune()

    metrics = train(search.task, argv, prog=f"seqnlp tune {search.task} (trial {trial.number})", on_evaluation=report)
    trial.set_user_attr("run", trial_record(metrics, search.metric))
    if metrics["train"]["ended_by"] == "pruned":
        raise optuna.TrialPruned()
    return metrics["dev"][search.metric]


def decoding_trial(search: Search, trial, settings: dict, folder: Path) -> float:
    """The trained model scored on the dev data with the trial's decoding settings: an evaluation folder (as
    ``seqnlp evaluate --output-dir`` writes), no training."""
    from seqnlp import api
    from seqnlp.evaluation.report import write_evaluation

    model = search.decoder
    decoding = api.Model(api.with_settings(model.task, settings), model.module, model.path)
    started = time.perf_counter()
    metrics, scores, examples = api.score(decoding, **search.dev_data)
    metrics = write_evaluation(folder, decoding.task, metrics, scores, examples, split="dev")
    value = metrics["dev"][search.metric]
    record = {"dev": value, "steps": None, "schedule_steps": None, "epochs": None, "ended_by": "decoded",
              "seconds": round(time.perf_counter() - started, 1), "config": settings}  # fmt: skip
    trial.set_user_attr("run", record)
    return value


def resumable_folder(trial) -> Path | None:
    """A re-run trial's folder, where the stopped run left a checkpoint to resume from."""
    from seqnlp.training.checkpoints import checkpoint_path

    if "rerun_of" not in trial.user_attrs:
        return None
    folder = Path(trial.user_attrs["folder"])
    return folder if existing_directory(checkpoint_path(folder)) is not None else None


def requeue_stopped(study) -> None:
    """Trials stopped by Ctrl-C or a killed process run again first, with their settings (and from their checkpoint
    where one is here): the study gets the trial its sampler asked for."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    requeued = {t.user_attrs.get("rerun_of") for t in trials}
    for t in trials:
        stopped = t.state == TrialState.FAIL and "failure" not in t.user_attrs and "folder" in t.user_attrs
        if stopped and t.number not in requeued and not t.user_attrs.get("surplus"):
            study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number, "folder": t.user_attrs["folder"]})


def trial_budget(search: Search) -> float | None:
    """The trial's --max-minutes: its own budget, cut to what is left of the search's."""
    if search.deadline is None:
        return search.trial_minutes
    left = max(0.05, (search.deadline - time.time()) / 60)
    return left if search.trial_minutes is None else min(search.trial_minutes, left)


def trial_record(metrics: dict, metric: str) -> dict:
    """What the study keeps of a trial's run: its score, how it ended, and its settings for best.yaml."""
    train = metrics["train"]
    return {
        "dev": metrics["dev"][metric],
        "steps": train["steps"],
        "schedule_steps": train.get("schedule_steps"),
        "epochs": train["epochs"],
        "seconds": train["seconds"],
        "ended_by": train["ended_by"],
        "config": metrics["config"],
    }


def surplus(search: Search, trial) -> bool:
    """Whether ``search.trials`` trials numbered before this one are finished or running (processes that ask for
    a trial at the same moment can both get one: the later number gives it up)."""
    from optuna.trial import TrialState

    taken = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                            TrialState.FAIL))  # fmt: skip
    ahead = [t for t in taken if t.number < trial.number and not t.user_attrs.get("surplus")
             and (t.state != TrialState.FAIL or "failure" in t.user_attrs)]  # fmt: skip
    return len(ahead) >= search.trials


def counted(study) -> tuple[int, int]:
    """(finished trials, running trials) of the study, surplus ones left out."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    ended = (TrialState.COMPLETE, TrialState.PRUNED)  # or failed for a reason: interrupted or killed ones run again
    finished = sum(t.state in ended or (t.state == TrialState.FAIL and "failure" in t.user_attrs) for t in trials)
    return finished, sum(t.state == TrialState.RUNNING for t in trials)


def fail_dead_trials(study) -> None:
    """Mark failed the running trials whose process on this machine is gone (a killed search); trials of other
    machines are failed by Optuna when their heartbeat stops."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") == host and isinstance(pid, int) and not process_alive(pid):
            try:
                study.tell(trial.number, state=TrialState.FAIL)
                print(f"trial {trial.number}: its process {pid} is gone; marked failed", flush=True)
            except (ValueError, RuntimeError):  # another process got there first
                pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def run_trials(search: Search, study) -> None:
    """Trials one after another until the study holds ``search.trials`` finished ones or the time is up; while
    other processes' trials would complete the count, wait for them (or for their death to be noticed)."""
    while True:
        fail_dead_trials(study)
        requeue_stopped(study)
        finished, running = counted(study)
        if finished >= search.trials or (search.deadline is not None and time.time() >= search.deadline):
            return
        if finished + running >= search.trials:
            time.sleep(WAIT_SECONDS)
            continue
        study.optimize(lambda trial: objective(search, trial), n_trials=1)


def storage_for(url: str | None, out: Path):
    """Optuna's storage: an SQLite file in the output folder unless ``url`` names a database; with heartbeats, so
    that a killed process's trial is failed and run again."""
    import optuna

    url = url or f"sqlite:///{(out / 'study.db').resolve()}"
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # processes queue for the file
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
                )
        except Exception as err:
            # processes that start together on an empty database race to create Optuna's tables: the losers retry
            if attempt < 4 and any(race in str(err) for race in CREATION_RACES):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise ConfigError(f"--storage {shown_url(url)}: {storage_failure(err)}") from None


def storage_failure(err: Exception) -> str:
    """A database error's first line (a server that cannot be reached, a missing driver)."""
    message = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    if "DB access module" in message:  # Optuna's words for a missing driver
        return "its database driver is not installed (PostgreSQL: pip install 'psycopg[binary]')"
    return message


def shown_url(url: str) -> str:
    """A database URL with its password left out."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_study(search: Search, storage, name: str, pruner, seed: int | None):
    """The study ``name`` in ``storage``, created or continued; one started with another task or space is refused."""
    import optuna

    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize" if search.higher_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=True,
    )
    space = json.dumps([[d.name, d.kind, list(d.values)] for d in search.dimensions])
    kept = study.user_attrs
    if not kept:
        study.set_user_attr("task", search.task)
        study.set_user_attr("space", space)
    elif kept.get("task") != search.task or kept.get("space") != space:
        raise ConfigError(
            f"the study {name!r} was started for {kept.get('task')} with another search space: give another --study "
            "(or the same task and space)"
        )
    if (study.direction.name == "MAXIMIZE") != search.higher_is_better:
        raise ConfigError(f"the study {name!r} optimises in the other direction")
    return study


def pruner_for(name: str):
    import optuna

    if name == "median":  # a trial below the median of earlier trials at the same epoch stops there
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def trial_rows(study) -> list[dict]:
    """Every trial of the study but the surplus ones: number, state, settings, score and how its run ended."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        run, failure = t.user_attrs.get("run", {}), t.user_attrs.get("failure")
        stopped = "interrupted" if t.user_attrs.get("interrupted") else "failed" if failure else None
        pruned_at = max(t.intermediate_values) if t.state.name == "PRUNED" and t.intermediate_values else None
        rows.append({
            "number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
            "folder": t.user_attrs.get("folder"), "host": t.user_attrs.get("host"),
            "steps": run.get("steps"), "schedule_steps": run.get("schedule_steps"), "seconds": run.get("seconds"),
            "ended_by": run.get("ended_by") or stopped, "failure": failure, "pruned_at_epoch": pruned_at,
        })  # fmt: skip
    return rows


def best_settings(record: dict) -> dict:
    """The best trial's settings as a ``--config`` file: its schedule pinned to the steps it annealed over (so the
    run is the same on any machine), no time budget, no output folder."""
    settings = {k: v for k, v in record["config"].items() if k not in ("output_dir", "quiet")}
    settings["max_minutes"] = None
    settings["max_steps"] = record["schedule_steps"]
    return settings


def write_results(search: Search, study, storage_url: str | None) -> dict:
    """OUT/summary.json, OUT/report.md with its plots, OUT/best.yaml and OUT/best/ (where the best trial's folder
    is on this machine)."""
    import yaml

    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "complete"]
    if not complete:
        failed = [r for r in rows if r["failure"]]
        why = f": {len(failed)} failed, the last with {failed[-1]['failure']}" if failed else " yet"
        raise SeqNLPError(f"{search.out}: no trial has completed{why}")
    finalists = rerun_finalists(search, study) if search.seeds else {}
    if finalists:
        choose = max if search.higher_is_better else min
        number = choose(finalists, key=lambda n: finalists[n]["dev"]["mean"])
        best = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        record = best.user_attrs["run"]
        settings = {**best_settings(record), "seed": finalists[number]["median_seed"]}
        source = existing_directory(search.out / "seeds" / f"{number:04d}" / "model")  # the median seed's
    else:
        best = study.best_trial
        record = best.user_attrs["run"]
        settings = record["config"] if search.decoder else best_settings(record)
        source = existing_directory(Path(best.user_attrs["folder"]) / "model")
    write_text_atomic(search.out / "best.yaml", yaml.safe_dump(settings, sort_keys=False))
    model = str(search.out / "best")
    if search.decoder is not None:  # the trained model with the best decoding settings saved in its config
        from seqnlp.api import with_settings
        from seqnlp.tasks.base import copy_model_dir

        copy_model_dir(with_settings(search.decoder.task, settings), search.decoder.path, model)
    elif source is not None and best.user_attrs.get("host") == socket.gethostname():
        with atomic_directory(search.out / "best") as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    else:
        model = None
    summary = {
        "task": search.task, "metric": search.metric,
        "direction": "maximize" if search.higher_is_better else "minimize",
        "study": study.study_name, "storage": shown_url(storage_url) if storage_url else "study.db",
        "space": {d.name: {d.kind: list(d.values)} for d in search.dimensions},
        "trials": rows,
        "best": {"number": best.number, "value": best.value, "params": best.params, "model": model,
                 "folder": best.user_attrs["folder"], "host": best.user_attrs.get("host"),
                 "config": str(search.out / "best.yaml"),
                 "clock": bool(record["config"].get("max_minutes")) and not finalists,
                 "decoded": None if search.decoder is None else str(search.decoder.path)},
        "finalists": {str(n): {**f["dev"], "median_seed": f["median_seed"]} for n, f in finalists.items()},
    }  # fmt: skip
    write_json(search.out / "summary.json", summary)
    plots = write_plots(study, search.out)
    write_text_atomic(search.out / "report.md", report(summary, settings, plots))
    return summary


def rerun_finalists(search: Search, study) -> dict[int, dict]:
    """The FINALISTS best complete trials re-trained from their step-pinned settings with seeds 1..K, each an
    ordinary ``seqnlp repeat`` folder (``OUT/seeds/NNNN/``): the best of N dev scores is biased upwards, a mean
    over seeds much less. Returns each finalist's repeat summary."""
    import yaml
    from optuna.trial import TrialState

    from seqnlp.training import repeat

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("surplus")]  # fmt: skip
    complete.sort(key=lambda t: t.value, reverse=search.higher_is_better)
    seeds = list(range(1, search.seeds + 1))
    results = {}
    for trial in complete[:FINALISTS]:
        folder = search.out / "seeds" / f"{trial.number:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        settings = folder / "settings.yaml"
        write_text_atomic(settings, yaml.safe_dump(best_settings(trial.user_attrs["run"]), sort_keys=False))
        for seed in seeds:
            done = repeat.train_seed(search.task, ["--config", str(settings), "--quiet"], folder, seed)
            print(f"trial {trial.number}, seed {seed}: {done}", flush=True)
        results[trial.number] = repeat.summarize(folder, seeds)
    return results


def write_plots(study, out: Path) -> list[str]:
    """Optuna's optimisation history, parameter importances and slice plots as PNG files; the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization.matplotlib as plots

    written = []
    for name, draw in (("history", plots.plot_optimization_history), ("importances", plots.plot_param_importances),
                       ("slices", plots.plot_slice)):  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):  # too few finished trials for this plot
                continue
        figure = np.ravel(axes)[0].figure
        figure.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(f"{name}.png")
    return written


def shown(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def report(summary: dict, settings: dict, plots: list[str]) -> str:
    import yaml

    from seqnlp.evaluation.report import markdown_table

    best, metric, names = summary["best"], summary["metric"], list(summary["space"])
    lines = [f"# seqnlp tune {summary['task']}: {len(summary['trials'])} trials", ""]
    over_seeds = summary["finalists"].get(str(best["number"]))
    chosen = f", mean over {over_seeds['seeds']} seeds {over_seeds['mean']:.4f}" if over_seeds else ""
    lines += [f"Best: trial {best['number']}, dev {metric} {best['value']:.4f}{chosen} ({summary['direction']}d); "
              f"its model: `{best['model'] or best['folder'] + '/model on ' + str(best['host'])}`.", ""]  # fmt: skip
    rows = [[r["number"], r["state"] + (f" (epoch {r['pruned_at_epoch']})" if r["pruned_at_epoch"] else ""),
             "-" if r["value"] is None else r["value"], *(shown(r["params"].get(n, "-")) for n in names),
             r["steps"] or "-", r["ended_by"] or "-"] for r in summary["trials"]]  # fmt: skip
    lines += ["## Trials", "", markdown_table(["trial", "state", f"dev {metric}", *names, "steps", "ended by"], rows)]
    if summary["finalists"]:
        seeds = [[n, f["mean"], f["sd"], f["min"], f["max"], f["seeds"]] for n, f in summary["finalists"].items()]
        lines += ["", "## The finalists over seeds", "", f"The best {len(seeds)} trials re-trained with each seed from "
                  "their step-pinned settings (`seeds/NNNN/`); the best is chosen by the mean, its model is the "
                  "median seed's.", "", markdown_table(["trial", f"mean dev {metric}", "sd", "min", "max", "seeds"],
                                                       seeds)]  # fmt: skip
    lines += ["", "## The best settings", "", *best_settings_lines(summary, settings), ""]
    lines += ["```yaml", yaml.safe_dump(settings, sort_keys=False).strip(), "```", ""]
    lines += ["## Search space", "", "```yaml", yaml.safe_dump(summary["space"], sort_keys=False).strip(), "```", ""]
    lines += [f"![{name[:-4]}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def best_settings_lines(summary: dict, settings: dict) -> list[str]:
    """How best.yaml re-runs the best trial, and how closely."""
    best, task = summary["best"], summary["task"]
    if best["decoded"]:
        return [
            f"The trials decoded `{best['decoded']}` with these settings (no training); `best/` is that model with "
            f"them saved, and `seqnlp train {task} --config best.yaml` trains a new model that decodes so."
        ]
    rerun = (f"`seqnlp train {task} --config best.yaml` re-runs the best trial over the {settings['max_steps']} steps "
             "its schedule annealed over (`max_steps`): the same schedule on any machine.")  # fmt: skip
    if best["clock"]:
        return [
            rerun,
            "",
            "The trial's own schedule followed the clock (a time budget), so the re-run is the same "
            "length, not the same run: the trial's rate at each step depended on how fast that machine was.",
        ]
    return [rerun, "", "The trial's schedule was counted in steps too, so on this machine the re-run equals it bit for "
            "bit."]  # fmt: skip


def main(argv: list[str], pruner=None) -> dict:
    """``seqnlp tune``; ``pruner``: an Optuna pruner in place of ``--pruner``'s (for the tests)."""
    from seqnlp.config import ArgumentParser
    from seqnlp.tasks import task_names
    from seqnlp.tasks.base import get_task

    parser = ArgumentParser(
        prog="seqnlp tune",
        usage="%(prog)s TASK --trials N --output-dir OUT [options] [seqnlp train options]",
        description="Search a task's settings with Optuna: each trial a run in OUT/trials/NNNN/, the best in OUT/best.",
        allow_abbrev=False,
    )
    parser.add_argument("task", choices=task_names())
    parser.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    parser.add_argument("--output-dir", required=True, help="the search's folder")
    parser.add_argument("--trial-minutes", type=float, help="each trial's training budget (its --max-minutes)")
    parser.add_argument("--max-minutes", type=float, help="no trial starts after this; trials are cut to end by it")
    parser.add_argument("--space", help="YAML search space (default: ranges around the task's defaults)")
    parser.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                        help="stops hopeless trials after an epoch's evaluation (default: median)")  # fmt: skip
    parser.add_argument("--storage", help="database URL shared by several processes or machines "
                        "(postgresql://USER:PASSWORD@HOST/DB); default: OUT/study.db (SQLite)")  # fmt: skip
    parser.add_argument("--study", default="seqnlp", help="the study's name in the storage (default: seqnlp)")
    parser.add_argument("--sampler-seed", type=int, help="TPE's seed: the same proposals on a re-run of one process")
    parser.add_argument("--seeds", type=int, metavar="K", help=f"re-train the best {FINALISTS} trials with seeds "
                        "1..K and choose by their mean dev score (K >= 2)")  # fmt: skip
    parser.add_argument("--model", help="a trained model folder: the trials vary its decoding settings alone (the "
                        "translator's beam and penalties) on the dev data, with no training")  # fmt: skip
    args, fixed = parser.parse_known_args(argv)
    try:
        import optuna
    except ImportError:
        raise ConfigError("seqnlp tune needs Optuna: pip install 'seqnlp[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's outcome is printed here, in one line
    cls = get_task(args.task)
    search = prepare_decoding(cls, args, fixed) if args.model else prepare(cls, args, fixed)
    storage = storage_for(args.storage, search.out)
    study = open_study(search, storage, args.study, pruner or pruner_for(args.pruner), args.sampler_seed)
    try:
        run_trials(search, study)
    except KeyboardInterrupt:
        finished, _ = counted(study)
        print(f"interrupted with {finished} of {search.trials} trials finished: the stopped trial is marked failed, "
              "and the same command continues the study with its settings first", flush=True)  # fmt: skip
        raise
    summary = write_results(search, study, args.storage)
    best = summary["best"]
    print(
        f"{len(summary['trials'])} trials: best dev {search.metric} {best['value']:.4f} (trial {best['number']}: "
        + ", ".join(f"{k} {v:.4g}" for k, v in best["params"].items())
        + f"); model: {best['model'] or best['folder']}; config: {best['config']}; report: {search.out / 'report.md'}"
    )
    return summary


def check_search_options(args, fixed: list[str]) -> None:
    managed = [flag for flag in fixed if flag.split("=")[0] in MANAGED]
    if managed:
        raise ConfigError(f"seqnlp tune sets {managed[0].split('=')[0]} for each trial: leave it out")
    if args.trials < 1:
        raise ConfigError("--trials must be at least 1")
    if args.seeds is not None and not 2 <= args.seeds <= 100:
        raise ConfigError("--seeds must be between 2 and 100")
    for name in ("trial_minutes", "max_minutes"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be a number of minutes above 0")


def prepare(cls, args, fixed: list[str]) -> Search:
    """The search, with every fixed option and the space checked before any trial runs."""
    from seqnlp.training.run import _given_settings, build_parser

    check_search_options(args, fixed)
    namespace = build_parser(cls.name).parse_args(fixed)
    configs.resolve(cls.config_class, namespace, namespace.config)  # a bad fixed value fails now, not in trial 1
    if args.space:
        dimensions = parse_space(cls.config_class, configs.load_yaml(args.space), args.space)
    else:
        dimensions = parse_space(cls.config_class, default_space(cls.config_class), "the default search space")
    both = [d.name for d in dimensions if d.name in _given_settings(namespace)]
    if both:
        raise ConfigError(f"{both[0]} is both given and searched: drop it from the options or from the space")
    if "quiet" not in vars(namespace):
        fixed = [*fixed, "--quiet"]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None
    return Search(cls.name, cls.metric, cls.higher_is_better, dimensions, fixed, out, args.trials,
                  args.trial_minutes, deadline, args.seeds)  # fmt: skip


def prepare_decoding(cls, args, fixed: list[str]) -> Search:
    """A search over a trained model's decoding settings: the model loaded once, the dev data (the options' or the
    model's own) and the space checked before any trial runs."""
    from seqnlp import api
    from seqnlp.training.run import _given_settings, build_parser

    check_search_options(args, fixed)
    if not cls.decoding_space:
        raise ConfigError(f"a {cls.name} model has no decoding settings to search: leave out --model to search its "
                          "training settings")  # fmt: skip
    if args.trial_minutes is not None or args.seeds is not None:
        raise ConfigError("with --model the trials only decode: --trial-minutes and --seeds do not apply")
    namespace = build_parser(cls.name).parse_args(fixed)
    given = _given_settings(namespace) & {f.name for f in fields(cls.config_class)}
    training = sorted(given - set(DECODING_DATA) - {"quiet"})
    if training:
        raise ConfigError(f"with --model the trials only decode: --{training[0].replace('_', '-')} does not apply "
                          f"(give {', '.join('--' + k.replace('_', '-') for k in DECODING_DATA)})")  # fmt: skip
    space = configs.load_yaml(args.space) if args.space else cls.decoding_space
    dimensions = parse_space(cls.config_class, space, args.space or "the default decoding space")
    outside = [d.name for d in dimensions if d.name not in cls.decoding_space]
    if outside:
        raise ConfigError(f"{outside[0]} needs retraining: with --model, search {', '.join(cls.decoding_space)}",
                          args.space)  # fmt: skip
    model = api.load(args.model, device=getattr(namespace, "device", "auto"))
    if not isinstance(model, api.Model) or model.task_name != cls.name:
        raise ConfigError(f"--model {args.model}: not a {cls.name} model folder (an ONNX export is not evaluated)")
    config = model.task.config
    dev = {k: getattr(namespace, k, getattr(config, k)) for k in ("dev_file", "dataset", "dataset_config")}
    if "dev_file" in given or "dataset" in given:  # the given data replaces the model's, not joins it
        dev = {k: getattr(namespace, k, None) for k in dev}
    if not dev["dev_file"] and not dev["dataset"]:
        raise ConfigError(f"{args.model} records no dev data: give --dev-file or --dataset")
    data = {"test_file": dev["dev_file"], "dataset": dev["dataset"], "dataset_config": dev["dataset_config"],
            "split": getattr(namespace, "dev_split", config.dev_split) if dev["dataset"] else None}  # fmt: skip
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None
    return Search(cls.name, cls.metric, cls.higher_is_better, dimensions, fixed, out, args.trials, None, deadline,
                  None, decoder=model, dev_data=data)  # fmt: skip
