"""The report's cross-corpus (cross-culture) section (`report.cross`): per protocol, the target's table (in-corpus
upper bound, source-only, adversarial: WA/UA/F1 mean ± std over folds × seeds), the culture discriminator's
accuracy, the claims among the cross models (adaptation > source-only, paired by fold and seed:
pipeline/report/stats.py) and a t-SNE of the fused embeddings coloured by corpus, before adaptation (the
source-only network) and after (the adversarial one), from the first run's source validation and target test
utterances (`checkpoints/<model>/<protocol>/extras.pt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.report.inputs import ModelResults, load_extras
from pipeline.report.stats import PairedResult, check_claims_config, claims_summary, claims_table_lines, evaluate_claim


def cross_models(config: Mapping[str, Any]) -> set[str]:
    """The models of the cross section: claims among them are tested on the protocols, not on the corpora."""
    return set(((config.get("cross") or {}).get("models") or {}).values())


def _cell(results: ModelResults | None, condition: str, metric: str, decimals: int) -> str:
    if results is None:
        return "not run"
    stat = results.stat(condition, metric)
    return f"{stat.mean:.{decimals}f} ± {stat.std:.{decimals}f}" if stat.available else "—"


def cross_table(renderer: Any, protocol: str, cross: Mapping[str, Any]) -> list[str]:
    """The target's table: one row per model, WA/UA/F1 and the discriminator's accuracy."""
    config, decimals = renderer.config, int(renderer.config["decimals"])
    metrics, condition = list(cross["metrics"]), str(config["full_condition"])
    labels = [config["metric_labels"].get(m, m) for m in metrics]
    lines = [f"| Model | Runs | {' | '.join(labels)} | Culture discriminator accuracy |",
             "|---|---:|" + "---:|" * len(metrics) + "---:|"]
    for label, model in cross["models"].items():
        results = renderer.results(model, protocol)
        runs = f"{results.n_folds} × {len(results.seeds)}" if results else "—"
        acc = (results.metrics.get("culture_accuracy") or {}) if results else {}
        last = (results.metrics.get("culture_accuracy_last_epoch") or {}) if results else {}
        accuracy = f"{acc['mean']:.{decimals}f} ± {acc['std']:.{decimals}f}" if "mean" in acc else "—"
        if "mean" in last:
            accuracy += f" (last epoch, training batches: {last['mean']:.{decimals}f} ± {last['std']:.{decimals}f})"
        cells = [_cell(results, condition, m, decimals) for m in metrics]
        lines.append(f"| {label} (`{model}`) | {runs} | {' | '.join(cells)} | {accuracy} |")
        if results is None:
            renderer.note(f"cross-corpus {protocol}: {model} not run")
    return lines


def cross_claims(renderer: Any, protocol: str) -> list[str]:
    """The claims whose two models are both cross models, on this protocol's paired runs."""
    claims, settings = check_claims_config(renderer.config)
    ours = cross_models(renderer.config)
    rows: list[PairedResult] = []
    for claim in (c for c in claims if {c.better, c.worse} <= ours):
        better, worse = renderer.results(claim.better, protocol), renderer.results(claim.worse, protocol)
        if better is None or worse is None:
            renderer.note(f"claim {claim.better} > {claim.worse} on {protocol} not tested: not run")
            continue
        rows += evaluate_claim(claim, better, worse, settings)
    if not rows:
        return []
    decimals = int(renderer.config["decimals"])
    wins = []
    for row in rows:
        a = _paired(renderer.results(row.claim.better, protocol), row.claim.condition, row.claim.metric)
        b = _paired(renderer.results(row.claim.worse, protocol), row.claim.condition, row.claim.metric)
        keys = sorted(set(a) & set(b))
        wins.append(f"{row.claim.better} beat {row.claim.worse} in {sum(a[k] > b[k] for k in keys)} of {len(keys)} "
                    f"paired runs (mean difference {row.difference:+.{decimals}f}).")
    return ["", *claims_table_lines(rows, renderer.config["columns"], renderer.config["metric_labels"], decimals,
                                    settings.confidence), "", claims_summary(rows), *wins]


def _paired(results: ModelResults, condition: str, metric: str) -> dict[tuple[str, int], float]:
    return {(str(r["fold"]), int(r["seed"])): float(r["metrics"][condition][metric]) for r in results.full_runs()
            if condition in r.get("metrics", {})}


def tsne_by_corpus(extras: Mapping[str, Any], tsne: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE points of the source and target embeddings, and 0/1 for source/target."""
    from sklearn.manifold import TSNE

    source, target = (np.asarray(extras[k], dtype=np.float64) for k in ("embeddings_source", "embeddings_target"))
    points = np.concatenate([source, target])
    perplexity = min(float(tsne.get("perplexity", 30)), max(len(points) - 1, 1) / 3)
    embedded = TSNE(2, perplexity=perplexity, random_state=int(tsne.get("random_state", 0)),
                    init="pca").fit_transform(points)
    return embedded, np.r_[np.zeros(len(source), int), np.ones(len(target), int)]


def tsne_pair_figure(panels: list[tuple[str, np.ndarray, np.ndarray]], corpora: list[str], title: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(panels), 4.4))
    for i, (name, points, side) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for k, corpus in enumerate(corpora):
            ax.scatter(points[side == k, 0], points[side == k, 1], s=9, alpha=0.7, label=corpus)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    return fig


def cross_tsne(renderer: Any, protocol: str, cross: Mapping[str, Any]) -> None:
    tsne = cross.get("tsne") or {}
    panels = []
    corpora = ["source", "target"]
    for stage in ("before", "after"):
        results = renderer.results(tsne.get(stage, ""), protocol)
        if results is None or results.extras_path is None:
            renderer.note(f"cross-corpus {protocol}: no embeddings of {tsne.get(stage)!r} for the t-SNE")
            return
        extras = load_extras(results.extras_path)
        source = results.metrics.get("sources") or ["source"]
        corpora = ["+".join(source), str(results.metrics.get("target", "target"))]
        points, side = tsne_by_corpus(extras, renderer.config["plots"].get("tsne") or {})
        panels.append((f"{stage} adaptation ({tsne[stage]})", points, side))
    title = f"{protocol}: fused embeddings by corpus (t-SNE, first run)"
    renderer.figure(protocol, "tsne_corpus", tsne_pair_figure(panels, corpora, title), title)


def render_cross(renderer: Any) -> None:
    """Append the cross-corpus section to the report (nothing when `report.cross` is absent)."""
    cross = renderer.config.get("cross")
    if not cross:
        return
    for protocol in cross["protocols"]:
        renderer.lines += [f"## Cross-corpus: {protocol}", "",
                           "Trained on the source corpora, tested on the target's held-out speakers (in-corpus: "
                           "trained on the target's other speakers, the upper bound). Culture discriminator "
                           "accuracy: the selected network's, balanced over the source validation and target test "
                           "utterances (0.5 = cultures indistinguishable); in brackets the discriminator's accuracy on "
                           "the last epoch's training batches.", "", *cross_table(renderer, protocol, cross)]
        renderer.lines += [*cross_claims(renderer, protocol), ""]
        cross_tsne(renderer, protocol, cross)
