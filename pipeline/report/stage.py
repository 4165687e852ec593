"""The report stage: every model's metrics, runs and curves -> `reports/results.md` (paper-style tables with
their provenance) and PNG figures under `reports/plots/<corpus>/`.

Which tables exist is configuration (`report.tables` in params.yaml): `conditions` tables in the seed talk's layout
(rows models, columns the test conditions {a} {v} {t} {a,v} {a,t} {v,t} Average {a,v,t}, one block of rows per
metric), `full` tables (rows models, columns metrics at the full condition) and `sweep` tables (rows models,
columns labelled fractions). Every cell is `mean ± std` over folds and seeds; the best mean of a column is bold.
A model or corpus that was never trained is noted, not an error: a lab may not have run everything. A corpus
without every modality has fewer conditions: a conditions table shows the columns its models have, and the full
condition (`report.full_condition`) stands for each model's own (`azz` for audio alone) when it lacks `avl`.

Provenance comes from dvc.lock: the train stage that wrote a model's metrics names its feature stores (path +
md5) and its code deps; the code version is one md5 over those deps' (path, md5) lines. Besides the md5s the report
names the git commit of the code when the code paths (`report.provenance.code`: pipeline/, models/) have no
uncommitted change, so that the commit holds exactly that code; otherwise it says the checkout is modified. The
commit is not a DVC dependency (the stage does not re-run on a commit that changes no code it depends on): it names
a commit whose code gave these results, the md5s name the code itself.

dvc.lock is read but deliberately not a declared dependency: DVC rewrites dvc.lock after every stage, this one
included, so declaring it would leave the stage always out of date. DVC writes each train stage's entry before
running the stages that depend on its outputs, so the entries read here are the ones that produced the metrics.

Determinism: sorted iteration, fixed formatting, PNGs without date/software metadata, t-SNE on one thread with a
fixed random_state: the same inputs give byte-identical outputs.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.condition_names import missing_conditions, modalities_of
from models.metrics import confusion_matrix
from pipeline.layout import CURVES_ROOT, metrics_path
from pipeline.params import ConfigError, section
from pipeline.report.cross import cross_models, render_cross
from pipeline.report.figures import (
    claims_figure,
    condition_bars_figure,
    confusion_figure,
    curves_figure,
    figure_style,
    save_png,
    sweep_figure,
    tsne_figure,
    tsne_points,
)
from pipeline.report.inputs import (
    AVERAGE,
    ModelResults,
    Provenance,
    Stat,
    code_commit,
    load_extras,
    load_results,
    provenance,
    read_lock,
)
from pipeline.report.stats import (
    ClaimSettings,
    PairedResult,
    check_claims_config,
    claims_summary,
    claims_table_lines,
    evaluate_claim,
)

log = logging.getLogger(__name__)

KINDS = ("conditions", "full", "sweep")
COUNT_WORDS = {2: "two", 6: "six"}  # missing conditions over two and three modalities
MARKDOWN = "results.md"
PLOTS = "plots"
MISSING_CELL = "—"
SPLIT_PREFIXES = {"train": "train", "val": "validation", "test": "test"}


# ---- configuration ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    """One table of `report.tables`, checked: rows (label, model) in order, its kind and what its columns show."""

    title: str
    kind: str
    rows: tuple[tuple[str, str], ...]
    metrics: tuple[str, ...]
    condition: str
    slug: str


def _where(i: int) -> str:
    return f"report.tables[{i}]"


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a non-empty list of names, got {value!r}")
    return value


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"


def table_specs(config: Mapping[str, Any]) -> list[TableSpec]:
    """`report.tables`, checked: a configuration error names the table and key before any file is read."""
    tables = config.get("tables")
    if not isinstance(tables, list) or not tables:
        raise ConfigError("report.tables must be a non-empty list of tables")
    specs, slugs = [], {}
    for i, table in enumerate(tables):
        where = _where(i)
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a mapping (title, kind, models, metrics/metric)")
        title, kind = table.get("title"), table.get("kind")
        if not isinstance(title, str) or not title:
            raise ConfigError(f"{where}.title must be a non-empty string")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind must be one of {list(KINDS)}, got {kind!r}")
        models = table.get("models")
        if isinstance(models, dict) and models and all(isinstance(v, str) for v in models.values()):
            rows = tuple((str(label), model) for label, model in models.items())
        else:
            rows = tuple((m, m) for m in _str_list(models, f"{where}.models"))
        if len({label for label, _ in rows}) != len(rows):
            raise ConfigError(f"{where}.models: row labels must be unique")
        if kind == "sweep":
            metric = table.get("metric")
            if not isinstance(metric, str) or not metric:
                raise ConfigError(f"{where}.metric must name one metric (e.g. ua)")
            metrics = (metric,)
        else:
            metrics = tuple(_str_list(table.get("metrics"), f"{where}.metrics"))
        condition = table.get("condition", config["full_condition"])
        if not isinstance(condition, str):
            raise ConfigError(f"{where}.condition must be a condition name, got {condition!r}")
        slug = slugify(str(table.get("name", title)))
        if slug in slugs:
            raise ConfigError(f"{where}: its file name {slug!r} repeats {_where(slugs[slug])}; give one a 'name'")
        slugs[slug] = i
        specs.append(TableSpec(title, kind, rows, metrics, condition, slug))
    return specs


def check_report_config(config: Mapping[str, Any]) -> list[TableSpec]:
    """Every key the stage needs, with its type, before any work starts; returns the checked tables."""
    def need(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if key not in mapping:
            raise ConfigError(f"{where}.{key} is not set")
        if not isinstance(mapping[key], kind) or isinstance(mapping[key], bool) and kind is int:
            raise ConfigError(f"{where}.{key} has the wrong type: {mapping[key]!r}")
        return mapping[key]

    if not isinstance(config, Mapping):
        raise ConfigError("report must be a mapping")
    _str_list(need(config, "corpora", list, "report"), "report.corpora")
    need(config, "out_dir", str, "report")
    if need(config, "decimals", int, "report") < 0:
        raise ConfigError("report.decimals must be >= 0")
    if need(config, "group_rows_by", str, "report") not in ("metric", "model"):
        raise ConfigError(f"report.group_rows_by must be 'metric' or 'model', got {config['group_rows_by']!r}")
    columns = need(config, "columns", dict, "report")
    if not columns or not all(isinstance(v, str) for v in columns.values()):
        raise ConfigError("report.columns must map each condition to its column header")
    need(config, "full_condition", str, "report")
    need(config, "metric_labels", dict, "report")
    prov = need(config, "provenance", dict, "report")
    for key in ("stores", "code"):
        _str_list(need(prov, key, list, "report.provenance"), f"report.provenance.{key}")
    if need(prov, "md5_chars", int, "report.provenance") < 1:
        raise ConfigError("report.provenance.md5_chars must be >= 1")
    plots = need(config, "plots", dict, "report")
    if need(plots, "dpi", int, "report.plots") < 10:
        raise ConfigError("report.plots.dpi must be >= 10")
    confusion = need(plots, "confusion", dict, "report.plots")
    _str_list(need(confusion, "conditions", list, "report.plots.confusion"), "report.plots.confusion.conditions")
    need(confusion, "normalize", bool, "report.plots.confusion")
    need(need(plots, "bars", dict, "report.plots"), "metric", str, "report.plots.bars")
    curves = need(plots, "curves", dict, "report.plots")
    need(curves, "loss", str, "report.plots.curves")
    need(curves, "score", str, "report.plots.curves")
    tsne = need(plots, "tsne", dict, "report.plots")
    need(tsne, "models", list, "report.plots.tsne")
    if need(tsne, "perplexity", (int, float), "report.plots.tsne") <= 0:
        raise ConfigError("report.plots.tsne.perplexity must be > 0")
    need(tsne, "random_state", int, "report.plots.tsne")
    if need(tsne, "max_points", int, "report.plots.tsne") < 4:
        raise ConfigError("report.plots.tsne.max_points must be >= 4")
    check_claims_config(config)
    return table_specs(config)


# ---- tables -------------------------------------------------------------------------------------------------


def format_stat(stat: Stat, decimals: int) -> str:
    if not stat.available:
        return MISSING_CELL
    if math.isnan(stat.std):
        return f"{stat.mean:.{decimals}f}"
    return f"{stat.mean:.{decimals}f} ± {stat.std:.{decimals}f}"


def bold_best(stats: Sequence[Stat], decimals: int) -> list[str]:
    """The column's cells, the best mean (as shown, i.e. rounded; ties all bold) in bold when >= 2 compete."""
    cells = [format_stat(s, decimals) for s in stats]
    shown = [round(s.mean, decimals) for s in stats if s.available]
    if len(shown) >= 2:
        best = max(shown)
        cells = [f"**{c}**" if s.available and round(s.mean, decimals) == best else c
                 for c, s in zip(cells, stats, strict=True)]
    return cells


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    n_label_columns: int

    def markdown(self) -> list[str]:
        align = ["---"] * self.n_label_columns + ["---:"] * (len(self.header) - self.n_label_columns)
        return ["| " + " | ".join(self.header) + " |", "|" + "|".join(align) + "|",
                *("| " + " | ".join(row) + " |" for row in self.rows)]


def _blocks(stat_rows: list[tuple[list[str], list[Stat]]], decimals: int) -> list[list[str]]:
    """Bold the best per column of one block of rows (rows: label cells, stats)."""
    if not stat_rows:
        return []
    columns = [bold_best([stats[j] for _, stats in stat_rows], decimals) for j in range(len(stat_rows[0][1]))]
    return [labels + [columns[j][i] for j in range(len(columns))] for i, (labels, _) in enumerate(stat_rows)]


def metric_label(metric: str, config: Mapping[str, Any]) -> str:
    return str(config["metric_labels"].get(metric, metric))


def conditions_table(spec: TableSpec, results: Mapping[str, ModelResults], config: Mapping[str, Any]) -> Table:
    """Rows models, columns the configured test conditions; one block of rows per metric (or per model, with
    `group_rows_by: model`, the seed talk's own order). Bold compares the models within one metric."""
    rows = [(label, model) for label, model in spec.rows if model in results]
    columns = present_columns(config["columns"], [results[model] for _, model in rows])
    by_metric = {metric: [([metric_label(metric, config), label], [results[model].stat(c, metric) for c in columns])
                          for label, model in rows] for metric in spec.metrics}
    cells = {metric: _blocks(block, int(config["decimals"])) for metric, block in by_metric.items()}
    if config["group_rows_by"] == "metric":
        body = [row for metric in spec.metrics for row in cells[metric]]
        header = ["Metric", "Model"]
    else:
        body = [[row[1], row[0], *row[2:]] for i in range(len(rows)) for row in (cells[m][i] for m in spec.metrics)]
        header = ["Model", "Metric"]
    return Table(header + [config["columns"][c] for c in columns], body, 2)


def present_columns(columns: Mapping[str, str], found: Sequence[ModelResults]) -> list[str]:
    """The configured condition columns some model has (all of them when none has any: a table of gaps)."""
    have = {c for r in found for c in r.conditions()}
    kept = [c for c in columns if c in have]
    return kept or list(columns)


def full_table(spec: TableSpec, results: Mapping[str, ModelResults], config: Mapping[str, Any]) -> Table:
    """Rows models, columns metrics at the table's condition (the full one unless the table names another; a model
    without every modality at its own full condition)."""
    full = config["full_condition"]
    block = [([label], [results[model].stat(results[model].resolve(spec.condition, full), m)
                        for m in spec.metrics])
             for label, model in spec.rows if model in results]
    return Table(["Model", *(metric_label(m, config) for m in spec.metrics)], _blocks(block, int(config["decimals"])),
                 1)


def sweep_fractions(spec: TableSpec, results: Mapping[str, ModelResults]) -> list[str]:
    keys = {k for _, model in spec.rows if model in results for k in results[model].sweep()}
    return sorted(keys, key=float)


def sweep_table(spec: TableSpec, results: Mapping[str, ModelResults], config: Mapping[str, Any]) -> Table:
    """Rows models, columns the labelled fractions of their sweeps (the union), the table's metric."""
    fractions = sweep_fractions(spec, results)
    full = config["full_condition"]
    block = [([label], [results[model].sweep_stat(f, results[model].resolve(spec.condition, full), spec.metrics[0])
                        for f in fractions])
             for label, model in spec.rows if model in results]
    return Table(["Model", *fractions], _blocks(block, int(config["decimals"])), 1)


TABLES = {"conditions": conditions_table, "full": full_table, "sweep": sweep_table}


def provenance_line(label: str, results: ModelResults, prov: Provenance | None, md5_chars: int) -> str:
    """One model's runs and, from dvc.lock, its feature stores, code version and params."""
    seeds = ", ".join(str(s) for s in results.seeds)
    protocol = results.metrics.get("protocol")
    folds, n_seeds = results.n_folds, len(results.seeds)
    runs = f"{folds} fold{'s' * (folds != 1)} × {n_seeds} seed{'s' * (n_seeds != 1)} ({seeds})"
    head = f"- {label} (`{results.model}`): " + (f"{protocol} protocol, " if protocol else "") + runs
    if prov is None:
        return head + "; provenance unknown: no train stage in dvc.lock wrote " + \
            f"{metrics_path(results.model, results.corpus).as_posix()}"
    stores = ", ".join(f"{path} (md5 {md5[:md5_chars]})" for path, md5 in prov.stores) or "none recorded"
    code = prov.code_md5[:md5_chars] if prov.code_md5 else "none recorded"
    return (f"{head}; feature stores {stores}; code md5 {code}; params md5 {prov.params_md5[:md5_chars]} "
            f"(dvc.lock stage `{prov.stage}`)")


# ---- the report ---------------------------------------------------------------------------------------------


@dataclass
class Report:
    """The rendered report: its markdown, its figures by relative path under out_dir, and the notes made."""

    markdown: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _column_label(column: str, config: Mapping[str, Any]) -> str:
    prefix, _, rest = column.partition("_")
    if prefix in SPLIT_PREFIXES and rest:
        return f"{SPLIT_PREFIXES[prefix]} {metric_label(rest, config)}"
    return column.replace("_", " ")


class _Renderer:
    """Builds the markdown and the figures of one report; loads each model's results once."""

    def __init__(self, root: Path, config: Mapping[str, Any], specs: list[TableSpec]):
        self.root, self.config, self.specs = root, config, specs
        self.lock = read_lock(root / "dvc.lock")
        self.lines: list[str] = []
        self.figures: dict[str, Any] = {}
        self.notes: list[str] = []
        self._cache: dict[tuple[str, str], ModelResults | None] = {}

    def code_line(self) -> str:
        paths = ", ".join(f"{p.rstrip('/')}/" for p in self.config["provenance"]["code"])
        commit = code_commit(self.root, self.config["provenance"]["code"])
        if commit is None:
            return (f"Code: not a clean git checkout of {paths} (uncommitted changes, or no git): the md5s below "
                    "identify it.")
        return f"Code: git commit `{commit}` ({paths} as committed there) and the md5s below."

    def results(self, model: str, corpus: str) -> ModelResults | None:
        if (model, corpus) not in self._cache:
            self._cache[(model, corpus)] = load_results(self.root, model, corpus)
        return self._cache[(model, corpus)]

    def figure(self, corpus: str, name: str, fig: Any, alt: str) -> None:
        rel = f"{PLOTS}/{corpus}/{name}.png"
        self.figures[rel] = fig
        self.lines += [f"![{alt}]({rel})", ""]

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.lines += [f"- {text}"]

    def render(self) -> Report:
        decimals, md5_chars = int(self.config["decimals"]), int(self.config["provenance"]["md5_chars"])
        self.lines += ["# Results", "",
                       f"Written by `affectflow report` from metrics/, checkpoints/, plots/curves/ and dvc.lock. "
                       f"Cells: mean ± std over folds × seeds ({decimals} decimals); **bold**: the best mean of "
                       "its column. Code md5: one md5 over the (path, md5) lines of the train stage's code deps in "
                       "dvc.lock.", "", self.code_line(), ""]
        for corpus in self.config["corpora"]:
            self.lines += [f"## {corpus}", ""]
            for spec in self.specs:
                self.table(spec, corpus, md5_chars)
            self.claims(corpus)
            self.confusions(corpus)
            self.embeddings(corpus)
        render_cross(self)  # report.cross: the cross-corpus protocols (pipeline/report/cross.py)
        if not self.lock:
            self.notes.append("dvc.lock not found or empty: provenance unknown for every model")
        markdown = "\n".join(self.lines).rstrip() + "\n"
        return Report(markdown, self.figures, self.notes)

    def table(self, spec: TableSpec, corpus: str, md5_chars: int) -> None:
        self.lines += [f"### {spec.title}", ""]
        found = {model: r for _, model in spec.rows if (r := self.results(model, corpus)) is not None}
        missing = [(label, model) for label, model in spec.rows if model not in found]
        if not found:
            self.lines += [f"No results on {corpus} for any model of this table.", ""]
        else:
            self.lines += [*TABLES[spec.kind](spec, found, self.config).markdown(), ""]
            self.lines += ["Runs and provenance (dvc.lock):", ""]
            for label, model in spec.rows:
                if model in found:
                    prov = provenance(self.lock, model, corpus, self.config["provenance"])
                    self.lines.append(provenance_line(label, found[model], prov, md5_chars))
        for label, model in missing:
            self.note(f"not run: {label} (`{model}`) on {corpus}: no {metrics_path(model, corpus).as_posix()}")
        if spec.kind == "sweep":
            for label, model in spec.rows:
                if model in found and not found[model].sweep():
                    self.note(f"{label} (`{model}`) on {corpus} has no labelled-fraction sweep")
        self.lines.append("")
        if found:
            self.table_figures(spec, corpus, found)

    def table_figures(self, spec: TableSpec, corpus: str, found: Mapping[str, ModelResults]) -> None:
        plots = self.config["plots"]
        labels = {model: label for label, model in spec.rows}
        if spec.kind == "conditions":
            metric = plots["bars"]["metric"]
            shown = present_columns(self.config["columns"], list(found.values()))
            columns = {c: self.config["columns"][c] for c in shown}
            stats = {labels[m]: {c: r.stat(c, metric) for c in columns} for m, r in found.items()}
            title = f"{spec.title} ({corpus}): {metric_label(metric, self.config)} per test condition"
            self.figure(corpus, f"{spec.slug}_bars", condition_bars_figure(stats, columns, title,
                                                                           metric_label(metric, self.config)), title)
        if spec.kind == "sweep":
            metric = spec.metrics[0]
            full = self.config["full_condition"]
            stats = {labels[m]: {float(f): r.sweep_stat(f, r.resolve(spec.condition, full), metric) for f in r.sweep()}
                     for m, r in found.items() if r.sweep()}
            if stats:
                title = f"{spec.title} ({corpus}): {metric_label(metric, self.config)}, {spec.condition}"
                self.figure(corpus, f"{spec.slug}_sweep", sweep_figure(stats, title, metric_label(metric, self.config)),
                            title)
        curves = {labels[m]: r.curves for m, r in found.items() if r.curves is not None}
        if curves:
            loss, score = plots["curves"]["loss"], plots["curves"]["score"]
            title = f"{spec.title} ({corpus}): training curves (mean over runs)"
            fig = curves_figure(curves, loss, score, title, _column_label(loss, self.config),
                                _column_label(score, self.config))
            self.figure(corpus, f"{spec.slug}_curves", fig, title)
        else:
            self.note(f"{spec.title} on {corpus}: no training curves (plots/curves/) for its models")

    def claims(self, corpus: str) -> None:
        """The "Claimed orderings" table: each claim's paired difference over (fold, seed) runs, its interval,
        the Wilcoxon p-value and whether it holds; a figure of the differences; one sentence naming which hold."""
        claims, settings = check_claims_config(self.config)
        if not claims:
            return
        rows: list[PairedResult] = []
        for claim in (c for c in claims if not {c.better, c.worse} <= cross_models(self.config)):
            better, worse = self.results(claim.better, corpus), self.results(claim.worse, corpus)
            if better is None or worse is None:
                absent = ", ".join(m for m, r in ((claim.better, better), (claim.worse, worse)) if r is None)
                self.note(f"claim {claim.better} > {claim.worse} on {corpus} not tested: not run: {absent}")
                continue
            condition = better.resolve(claim.condition, self.config["full_condition"])
            worse_condition = worse.resolve(claim.worse_condition or claim.condition, self.config["full_condition"])
            if condition not in better.conditions() or worse_condition not in worse.conditions():
                self.note(f"claim {claim.name} on {corpus} not tested: condition {condition} or {worse_condition} "
                          "is not among the models' test conditions")
                continue
            rows += evaluate_claim(claim, better, worse, settings, condition, worse_condition)
        if rows:
            self.claims_block(corpus, rows, settings)

    def claims_block(self, corpus: str, rows: list[PairedResult], settings: ClaimSettings) -> None:
        decimals, level = int(self.config["decimals"]), f"{settings.confidence * 100:g}%"
        self.lines += ["### Claimed orderings", "",
                       f"Each ordering a seed paper claims, tested on the paired runs (the same fold and seed for "
                       f"both models): Difference = mean of better - worse over the runs; {level} interval: paired "
                       f"bootstrap ({settings.resamples} resamples of the runs, seed {settings.seed}); Wilcoxon "
                       "signed-rank p, one-sided (better > worse). A claim holds when its interval lies above 0. "
                       "The runs of one fold share their test speakers, so they are not fully independent: the "
                       "interval speaks of these runs.", "",
                       *claims_table_lines(rows, self.config["columns"], self.config["metric_labels"], decimals,
                                           settings.confidence), "", claims_summary(rows), ""]
        bars = [(f"{r.claim.name}, {metric_label(r.claim.metric, self.config)}"
                 + ("" if r.claim.worse_condition else
                    f" {self.config['columns'].get(r.claim.condition, r.claim.condition)}")
                 + (f" @ {r.fraction}" if r.fraction is not None else ""), r.difference, r.low, r.high, r.holds)
                for r in rows]
        title = f"Claimed orderings on {corpus}: paired differences over fold × seed runs"
        self.figure(corpus, "claims_differences", claims_figure(bars, title, level), title)

    def confusions(self, corpus: str) -> None:
        """Pooled over the full-fraction runs of every model of the tables, for each configured condition that
        the model has predictions for (MMGCN and SSMM: avl only; MMIN family: also the pooled average)."""
        models = list(dict.fromkeys(model for spec in self.specs for _, model in spec.rows))
        conf = self.config["plots"]["confusion"]
        header = False
        for model in models:
            results = self.results(model, corpus)
            if results is None or not results.classes():
                continue
            for configured in conf["conditions"]:
                condition = results.resolve(configured, self.config["full_condition"])
                pooled = results.pooled_predictions(condition)
                if pooled is None:
                    continue
                if not header:
                    self.lines += ["### Confusion matrices", ""]
                    header = True
                classes = results.classes()
                cm = confusion_matrix(pooled[0], pooled[1], len(classes))
                label = self.config["columns"].get(condition, condition)
                if condition == AVERAGE:
                    pooled_count = len(missing_conditions(modalities_of(results.conditions())))
                    label += f" (the {COUNT_WORDS.get(pooled_count, pooled_count)} missing-modality conditions pooled)"
                title = (f"{model} on {corpus}, test condition {label}: pooled over {len(results.full_runs())} "
                         f"runs")
                self.figure(corpus, f"confusion_{model}_{condition}",
                            confusion_figure(cm, classes, title, bool(conf["normalize"])), title)

    def embeddings(self, corpus: str) -> None:
        """The seed talk's figure 3 for each configured model: imagined vs ground-truth fused vectors."""
        tsne_cfg = self.config["plots"]["tsne"]
        header = False
        for model in tsne_cfg["models"]:
            results = self.results(model, corpus)
            if results is None:
                self.note(f"t-SNE of {model} on {corpus}: not run")
                continue
            extras = load_extras(results.extras_path) if results.extras_path else {}
            emb = extras.get("embeddings")
            if not isinstance(emb, dict) or not {"imagined", "target", "labels"} <= set(emb):
                self.note(f"t-SNE of {model} on {corpus}: its extras.pt holds no embeddings")
                continue
            imagined, target = np.asarray(emb["imagined"]), np.asarray(emb["target"])
            labels = np.asarray(emb["labels"], dtype=np.int64)
            if len(imagined) > int(tsne_cfg["max_points"]):
                rng = np.random.default_rng(int(tsne_cfg["random_state"]))
                keep = np.sort(rng.choice(len(imagined), int(tsne_cfg["max_points"]), replace=False))
                imagined, target, labels = imagined[keep], target[keep], labels[keep]
            if len(imagined) < 2:
                self.note(f"t-SNE of {model} on {corpus}: fewer than 2 embeddings")
                continue
            if not header:
                self.lines += ["### Imagined vs ground-truth embeddings (t-SNE)", ""]
                header = True
            classes = results.classes() or [str(c) for c in range(int(labels.max()) + 1)]
            run = f"fold {results.metrics.get('fold_names', ['?'])[0]}, seed {(results.seeds or ['?'])[0]}"
            title = f"{model} on {corpus}: imagined vs ground truth, {len(imagined)} test items ({run})"
            self.figure(corpus, f"tsne_{model}", tsne_figure(tsne_points(imagined, target, tsne_cfg), labels,
                                                             classes, title), title)


def build_report(root: Path, config: Mapping[str, Any]) -> Report:
    """Render the report of the results under `root` (tables, provenance, figures) without writing anything."""
    specs = check_report_config(config)
    with figure_style():
        return _Renderer(Path(root), config, specs).render()


def write_report(root: Path, config: Mapping[str, Any]) -> Report:
    """Build the report and (re)write `<out_dir>/results.md` and `<out_dir>/plots/`, removing stale PNGs."""
    start = time.perf_counter()
    root = Path(root)
    report = build_report(root, config)
    out_dir = root / config["out_dir"]
    plots_dir = out_dir / PLOTS
    if plots_dir.exists():
        for old in sorted(plots_dir.rglob("*.png")):
            old.unlink()
    dpi = int(config["plots"]["dpi"])
    with figure_style():
        for rel, fig in tqdm(sorted(report.figures.items()), desc="report figures", unit="png", disable=None):
            save_png(fig, out_dir / rel, dpi)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (MARKDOWN + ".tmp")
    tmp.write_text(report.markdown)
    tmp.replace(out_dir / MARKDOWN)
    for note in report.notes:
        log.warning("report: %s", note)
    log.info("report: %d tables x %d corpora, %d figures, %d notes -> %s (%.1f s)", len(config["tables"]),
             len(config["corpora"]), len(report.figures), len(report.notes), out_dir / MARKDOWN,
             time.perf_counter() - start)
    return report


def report_stage(params: dict[str, Any], root: Path = Path(".")) -> Report:
    """`affectflow report`: the `report` section of params.yaml -> reports/."""
    return write_report(root, section(params, "report"))


def list_plot_files(root: Path, config: Mapping[str, Any]) -> list[str]:
    """The files `dvc plots show` can take as targets, relative to `root`: the report's PNGs and the train
    stage's curves CSVs of the configured corpora, sorted."""
    root = Path(root)
    images = sorted(p.relative_to(root).as_posix() for p in (root / config["out_dir"] / PLOTS).rglob("*.png"))
    corpora = set(config["corpora"])
    curves_root = root / CURVES_ROOT
    curves = sorted(p.relative_to(root).as_posix() for p in curves_root.glob("*/*.csv") if p.stem in corpora)
    return images + curves
