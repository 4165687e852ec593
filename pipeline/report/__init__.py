"""The report stage (`affectflow report`): every model's metrics, runs and curves -> `reports/results.md` and
`reports/plots/`.

    stage.py    the report's configuration, its tables and the files it writes (`report_stage`, `build_report`)
    inputs.py   reading what the train stage wrote (metrics, runs.json, curves, extras.pt, dvc.lock provenance)
    figures.py  the PNG figures (curves, confusion matrices, t-SNE)
    stats.py    the seed papers' claimed orderings tested on paired runs (bootstrap interval, Wilcoxon)
    cross.py    the cross-corpus protocols' section
"""
