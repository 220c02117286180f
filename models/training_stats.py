#!/usr/bin/env python3
"""Writes the `training` block of a variables file: what the data the model was
trained on looked like, so the daemon can tell when live traffic stops looking
like it (sigflow's drift monitoring, README "Model health").

The model is not retrained. Per input, over the rows the normalization was fitted
on (every row except the held-out EventId % 10 == 9, models/README.md "Data
split"): the mean and population std of the defined values (the same numbers as
offset and scale), their 19 inner 5 % quantile edges (20 bins), the share of
them in each bin (equal unless values repeat), and the fraction of rows where
the input is missing (-999.0, replaced by its fill). Per model, on the
held-out split: the 19 inner 5 % quantile edges of p(signal) from a float64
forward pass of the saved weights, the share in each bin, and the fraction of
events the argmax labels signal. Per model, for `--precision int8`
(src/infer_onednn.c), on the gradient rows (EventId % 10 not 8 or 9, what the
weights were fitted on): the range of each Dense layer's input, the 99.99th
percentile of |x| over every value of it, from a float32 forward pass as
served. int8 maps [0, range] onto 0..255 and saturates above it (models/README.md
"int8" says why a percentile and not the largest value).

    /work/venv-25/bin/python models/training_stats.py
updates models/higgs_variables.json (the shipped model, also the ensemble's
`numpy` member), writes models/higgs_variables_<member>.json for the other
members of models/higgs_ensemble.json (same inputs, their own score edges) and
points the set at them.
numpy and h5py only; deterministic (same input, same bytes).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_higgs as th  # noqa: E402  data, split, preprocessing
from train_higgs_ensemble import p_signal, read_h5  # noqa: E402  float64 forward pass

N_BINS = 20
SPLIT = "EventId % 10 != 9 (the normalization's rows)"
HELDOUT = "EventId % 10 == 9 (held out)"
CALIBRATION = "EventId % 10 not 8 or 9 (the gradient rows)"
CAL_PERCENTILE = 99.99


def edges(values):
    """The N_BINS - 1 inner quantile edges (numpy's linear interpolation)."""
    qs = np.arange(1, N_BINS) / N_BINS
    return [float("%.9g" % e) + 0.0 for e in np.quantile(values, qs)]  # + 0.0: no -0


def fractions(values, e):
    """The share of values in each bin, bin k holding the values with exactly k
    edges <= value (the daemon's rule, src/drift.c). Not 1/N_BINS each when
    values repeat: PRI_jet_num's edges are 0 0 ... 1 1 ... 2 ..."""
    bins = np.searchsorted(np.array(e), values, side="right")
    return [float("%.6g" % f) for f in np.bincount(bins, minlength=N_BINS) / len(values)]


def input_stats(names, x):
    out = []
    for j, name in enumerate(names):
        col = x[:, j]
        defined = col[col != th.MISSING]
        out.append({
            "name": name,
            "mean": float("%.12g" % defined.mean()),
            "std": float("%.12g" % defined.std()),
            "quantiles": edges(defined),
            "fractions": fractions(defined, edges(defined)),
            "missing_fraction": float("%.6g" % (1.0 - len(defined) / len(col))),
        })
    return out


def score_stats(p):
    return {
        "label": "s",
        "split": HELDOUT,
        "events": int(len(p)),
        "quantiles": edges(p),
        "fractions": fractions(p, edges(p)),
        "signal_rate": float("%.6g" % np.mean(p >= 0.5)),
    }


def calibration(model_path, variables, x):
    """The int8 calibration of a model: per Dense layer, in order, its width
    and the CAL_PERCENTILE-th percentile of |input| over the rows x, float32
    as the C pipeline computes (ReLU hidden layers)."""
    import h5py
    with h5py.File(model_path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in f["model_weights"].attrs["layer_names"]]
        names = [n for n in names if len(f["model_weights"][n].attrs["weight_names"])]
    Ws, bs = read_h5(model_path)
    h = th.normalize(x, variables, np.float32)
    layers = []
    for i, (W, b) in enumerate(zip(Ws, bs)):
        r = np.percentile(np.abs(h), CAL_PERCENTILE)
        layers.append({"layer": names[i], "inputs": int(W.shape[0]),
                       "range": float("%.6g" % r)})
        h = h @ W.astype(np.float32) + b.astype(np.float32)
        if i < len(Ws) - 1:
            h = np.maximum(h, 0.0)
    return {"split": CALIBRATION, "rows": int(len(x)),
            "statistic": "%gth percentile of |x| over every input value" % CAL_PERCENTILE,
            "dense_inputs": layers}


def write(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote %s" % path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    names, ids, x, _, _ = th.load_csv(th.DATA)
    train_rows = ~th.is_heldout(ids)
    held = th.is_heldout(ids)
    gradient = ~held & ~th.is_stopping(ids)
    inputs = input_stats(names, x[train_rows])

    shipped = os.path.join(here, "higgs_variables.json")
    with open(shipped) as f:
        base = json.load(f)
    base.pop("training", None)
    if [v["name"] for v in base["inputs"]] != names:
        sys.exit("%s: inputs are not the CSV's features in order" % shipped)

    set_path = os.path.join(here, "higgs_ensemble.json")
    with open(set_path) as f:
        st = json.load(f)
    for m in st["members"]:
        p = p_signal(os.path.join(here, m["model"]), base["inputs"], x[held])
        vname = ("higgs_variables.json" if m["model"] == "higgs_mlp.h5"
                 else "higgs_variables_%s.json" % m["name"])
        doc = dict(base)
        doc["training"] = {"rows": int(train_rows.sum()), "split": SPLIT,
                           "inputs": inputs, "score": score_stats(p),
                           "calibration": calibration(os.path.join(here, m["model"]),
                                                      base["inputs"], x[gradient])}
        write(os.path.join(here, vname), doc)
        m["variables"] = vname
    write(set_path, st)


if __name__ == "__main__":
    main()
