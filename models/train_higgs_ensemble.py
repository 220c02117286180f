#!/usr/bin/env python3
"""train_higgs_ensemble.py: one member of the shipped ensemble, trained by Keras 3
under the backend named by KERAS_BACKEND (tensorflow, jax, torch).

The network, split, preprocessing, optimizer and early stopping are those of
train_higgs_keras.py (same build(), same AdamW settings, same keep-best rule),
but written without TensorFlow calls so the same file runs under every backend
(train_higgs_keras.py imports tensorflow at module level for its determinism
switches, so it cannot be imported under jax or torch). The member's weight in
models/higgs_ensemble.json is its accuracy on the early-stopping rows
(EventId % 10 == 8), as issue 14 asks; --set writes that file from the members'
summaries.

  KERAS_BACKEND=jax python3 models/train_higgs_ensemble.py --name jax --out models
  python3 models/train_higgs_ensemble.py --set models/higgs_ensemble.json tf jax ...

Writes models/higgs_mlp_<name>.h5 (Keras 3's legacy HDF5 writer, which sigflow
reads) and models/higgs_mlp_<name>.summary.json (backend, versions, kept epoch,
early-stopping and held-out accuracy/AUC from a float64 forward pass of the
saved weights). The variables file is the shipped higgs_variables.json: the
normalization depends only on the training rows, not on the backend.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_higgs as th  # noqa: E402  data, split, preprocessing, metrics


def read_h5(path):
    """Dense kernels and biases of a Keras HDF5 file, Keras 2 or 3 layout."""
    import h5py
    Ws, bs = [], []
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        for ln in g.attrs["layer_names"]:
            ln = ln.decode() if isinstance(ln, bytes) else ln
            wn = [w.decode() if isinstance(w, bytes) else w for w in g[ln].attrs["weight_names"]]
            if len(wn):
                Ws.append(np.array(g[ln][wn[0]], np.float64))
                bs.append(np.array(g[ln][wn[1]], np.float64))
    return Ws, bs


def p_signal(model_path, variables, x):
    """float64 p(s) of raw rows x through a member's saved weights (ReLU hidden
    layers, softmax head), normalized by its variables as the C pipeline does."""
    h = th.normalize(x, variables, np.float64)
    Ws, bs = read_h5(model_path)
    for i, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W + b
        if i < len(Ws) - 1:
            h = np.maximum(h, 0.0)
    h = np.exp(h - h.max(axis=1, keepdims=True))
    h /= h.sum(axis=1, keepdims=True)
    return h[:, 1]


def write_reference(set_path, n_events=200):
    """float64 p(s) of every member and of the weighted ensemble for the first
    n_events held-out events, from the saved weights (tests/test_ensemble_parity.sh)."""
    with open(set_path) as f:
        st = json.load(f)
    names, ids, x_raw, y, raw_text = th.load_csv(th.DATA)
    rows = np.flatnonzero(th.is_heldout(ids))[:n_events]
    here = os.path.dirname(os.path.abspath(set_path))
    cols, total = [], sum(m["weight"] for m in st["members"])
    ens = np.zeros(len(rows))
    for m in st["members"]:
        with open(os.path.join(here, m["variables"])) as f:
            vdoc = json.load(f)
        p = p_signal(os.path.join(here, m["model"]), vdoc["inputs"], x_raw[rows])
        cols.append(p)
        ens += m["weight"] / total * p
    out = os.path.join(here, "higgs_ensemble_reference.csv")
    with open(out, "w") as f:
        f.write("# float64 p(s) of each member of %s and of the weighted ensemble for the first "
                "%d held-out events, by models/train_higgs_ensemble.py --reference\n"
                % (os.path.basename(set_path), len(rows)))
        f.write(",".join(["EventId"] + names + ["p_s_" + m["name"] for m in st["members"]]
                         + ["p_s_ensemble"]) + "\n")
        for k, r in enumerate(rows):
            f.write(",".join([str(ids[r])] + raw_text[r] + ["%.17g" % c[k] for c in cols]
                             + ["%.17g" % ens[k]]) + "\n")
    print("wrote %s" % out)


def write_set(path, names):
    members = []
    for n in names:
        with open(os.path.join(os.path.dirname(path), "higgs_mlp_%s.summary.json" % n)) as f:
            s = json.load(f)
        members.append({"name": n, "model": s["model"],
                        "variables": "higgs_variables.json",
                        "weight": round(s["stop_accuracy"], 6)})
    with open(path, "w") as f:
        json.dump({"name": "higgs-ensemble", "members": members}, f, indent=1)
        f.write("\n")
    print("wrote %s" % path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", help="member name (file suffix)")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--epochs", type=int, default=th.EPOCHS)
    ap.add_argument("--seed", type=int, default=th.SEED)
    ap.add_argument("--set", metavar="JSON", help="write the set file from the named members")
    ap.add_argument("--from-h5", metavar="H5",
                    help="train nothing: summarize an existing model of the same split "
                         "(the shipped higgs_mlp.h5 of train_higgs.py) as member --name")
    ap.add_argument("--sigflow", default=os.path.join(HERE, "..", "build", "sigflow"),
                    help="the sigflow binary whose `evaluate` scores the members")
    ap.add_argument("--reference", metavar="SET",
                    help="write higgs_ensemble_reference.csv next to SET (float64 parity)")
    ap.add_argument("members", nargs="*")
    hp = ap.parse_args()
    if hp.reference:
        write_reference(hp.reference)
        return
    if hp.set:
        write_set(hp.set, hp.members)
        return

    if hp.from_h5:
        ids = th.load_csv(th.DATA)[1]
        summarize(hp, hp.from_h5, {"backend": "numpy (train_higgs.py)"}, ids)
        return

    import keras  # after KERAS_BACKEND is read from the environment
    L = keras.layers
    t0 = time.time()
    keras.utils.set_random_seed(hp.seed)
    names, ids, x_raw, y, _ = th.load_csv(th.DATA)
    held = th.is_heldout(ids)
    stop = th.is_stopping(ids) & ~held
    fit = ~held & ~stop
    with open(os.path.join(HERE, "higgs_variables.json")) as f:
        vdoc = json.load(f)
    x32 = th.normalize(x_raw, vdoc["inputs"], np.float32)

    model = keras.Sequential(name="higgs_mlp")  # train_higgs_keras.build()
    model.add(keras.Input((x32.shape[1],)))
    for i, units in enumerate(th.HIDDEN):
        model.add(L.Dense(units, activation="relu"))
        if i < 2:
            model.add(L.Dropout(th.DROPOUT))
    model.add(L.Dense(len(th.LABELS), activation="softmax"))
    opt = keras.optimizers.AdamW(learning_rate=th.LEARNING_RATE, weight_decay=th.WEIGHT_DECAY,
                                 beta_1=th.ADAM_B1, beta_2=th.ADAM_B2, epsilon=th.ADAM_EPS)
    opt.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    best = [np.inf, -1, None]

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print("epoch %2d  train loss %.4f  stop-split loss %.4f acc %.4f  (%.0f s)"
                  % (epoch + 1, logs["loss"], logs["val_loss"], logs["val_accuracy"],
                     time.time() - t0), flush=True)
            if logs["val_loss"] < best[0]:
                best[:] = [logs["val_loss"], epoch + 1, self.model.get_weights()]

    model.fit(x32[fit], y[fit], batch_size=th.BATCH, epochs=hp.epochs, shuffle=True,
              validation_data=(x32[stop], y[stop]), callbacks=[KeepBest()], verbose=0)
    model.set_weights(best[2])
    path = os.path.join(hp.out, "higgs_mlp_%s.h5" % hp.name)
    model.save(path, include_optimizer=False)  # the served file: weights and config only

    summarize(hp, path, {"backend": keras.backend.backend(), "keras": keras.__version__,
                         "epochs": hp.epochs, "kept_epoch": best[1],
                         "seconds": round(time.time() - t0)}, ids)


def summarize(hp, path, summary, ids):
    """Accuracy and AUC of the saved model on the early-stopping and held-out
    rows, as sigflow serves it (`sigflow evaluate`, float32), next to the model."""
    import csv
    import gzip
    import subprocess
    import tempfile
    summary = dict(summary, name=hp.name, model=os.path.basename(path))
    with gzip.open(th.DATA, "rt", newline="") as f:
        rows = list(csv.reader(f))
    with tempfile.TemporaryDirectory() as tmp:
        for label, digit in (("stop", 8), ("heldout", 9)):
            split = os.path.join(tmp, label + ".csv")
            with open(split, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(rows[0])
                w.writerows(r for r in rows[1:] if int(r[0]) % 10 == digit)
            out = subprocess.run([hp.sigflow, "evaluate", "--model", path, "--variables",
                                  os.path.join(HERE, "higgs_variables.json"), "--csv", split,
                                  "--json"], check=True, capture_output=True, text=True).stdout
            ev = json.loads(out)
            summary[label + "_accuracy"] = ev["accuracy"]
            summary[label + "_auc"] = ev["auc"]
    with open(os.path.join(hp.out, "higgs_mlp_%s.summary.json" % hp.name), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
