"""Raw tables: `fusedtrain train` (no option but --target) against scikit-learn's MLPClassifier
on the same tables hand-prepared (a ColumnTransformer of imputation, one-hot encoding, scaling
and date parts), each on a held-out stratified 30%, over several seeds; medians of accuracy and
fit time. The tables are the ones the palmerpenguins and vega_datasets packages ship.

    python bench/bench_tables.py --seeds 5 --out bench/results/tables.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.resources
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

TABLES = {"penguins": "species", "cars": "Origin", "weather": "weather"}


def load(name: str) -> pd.DataFrame:
    if name == "penguins":
        import palmerpenguins

        return palmerpenguins.load_penguins()
    data = importlib.resources.files("vega_datasets") / "_data"
    if name == "cars":
        return pd.read_json(data / "cars.json")
    return pd.read_csv(data / "seattle-weather.csv")


def fusedtrain_run(path: str, target: str, seed: int) -> tuple:
    """(test accuracy, seconds of training) from the command line's report."""
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([sys.executable, "-m", "fusedtrain", "train", path, "--target", target,
                                 "--test-split", "0.3", "--seed", str(seed), "--verbose", "0", "--no-plot",
                                 "--device", "cpu", "--out", os.path.join(folder, "m.safetensors")],
                                capture_output=True, text=True, check=True)
    accuracy = float(re.search(r"^test\s+\S+\s+(\S+)", result.stdout, re.M).group(1))
    seconds = float(re.search(r"^time\s+(\S+) s", result.stdout, re.M).group(1))
    return accuracy, seconds


def hand_prepared(frame: pd.DataFrame, target: str):
    """The features a scikit-learn user prepares by hand: dates as year, month and day of year;
    the model-name column of the cars left out; text one-hot, numbers imputed and scaled."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = frame.drop(columns=[target, "Name"], errors="ignore")
    for column in ("date", "Year"):
        if column in features:
            dates = pd.to_datetime(features.pop(column))
            features[f"{column}_year"] = dates.dt.year
            features[f"{column}_month"] = dates.dt.month
            features[f"{column}_day_of_year"] = dates.dt.day_of_year
    text = [column for column in features if features[column].dtype.kind not in "biuf"]
    numbers = [column for column in features if column not in text]
    prepare = ColumnTransformer([
        ("text", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                               OneHotEncoder(handle_unknown="ignore")), text),
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers)])
    return features, prepare


def sklearn_run(frame: pd.DataFrame, target: str, seed: int) -> tuple:
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    labeled = frame[frame[target].notna()]
    features, prepare = hand_prepared(labeled, target)
    x_train, x_test, y_train, y_test = train_test_split(features, labeled[target], test_size=0.3,
                                                        random_state=seed, stratify=labeled[target])
    model = make_pipeline(prepare, MLPClassifier(hidden_layer_sizes=(128, 64), early_stopping=True,
                                                 max_iter=500, random_state=seed))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x_train, y_train)
    seconds = time.perf_counter() - started
    return float(model.score(x_test, y_test)), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", help="write the table as Markdown here")
    args = parser.parse_args()
    try:
        import sklearn  # noqa: F401
        import palmerpenguins  # noqa: F401
        import vega_datasets  # noqa: F401
    except ImportError as error:
        print(f"bench_tables: needs scikit-learn, palmerpenguins and vega_datasets ({error.name} is missing); "
              f"pip install '.[test]'")
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, target in TABLES.items():
            frame = load(name)
            path = os.path.join(folder, f"{name}.csv")
            frame.to_csv(path, index=False)
            ours = [fusedtrain_run(path, target, seed) for seed in range(args.seeds)]
            theirs = [sklearn_run(frame, target, seed) for seed in range(args.seeds)]
            rows.append((name, target, len(frame), *np.median(ours, axis=0), *np.median(theirs, axis=0)))
            print(f"{name}: fusedtrain {rows[-1][3]:.3f} ({rows[-1][4]:.2f} s), "
                  f"scikit-learn {rows[-1][5]:.3f} ({rows[-1][6]:.2f} s)", flush=True)
    lines = [f"| table | target | rows | fusedtrain accuracy | fusedtrain fit s | scikit-learn accuracy | "
             f"scikit-learn fit s |", "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {target} | {count} | {ours:.3f} | {ours_s:.2f} | {theirs:.3f} | {theirs_s:.2f} |"
              for name, target, count, ours, ours_s, theirs, theirs_s in rows]
    print("\n".join(lines))
    if args.out:
        import sklearn

        from fusedtrain.bench import cpu_model

        cpu = cpu_model()
        header = [f"# Raw tables: fusedtrain train against scikit-learn's MLPClassifier", "",
                  f"- date: {datetime.date.today().isoformat()}", f"- machine: {cpu}, {os.cpu_count()} cores",
                  f"- fusedtrain: `fusedtrain train TABLE.csv --target T --test-split 0.3 --seed S` (the raw CSV, "
                  f"default 128-64 MLP, validation 15%, early stopping); scikit-learn {sklearn.__version__}: "
                  f"MLPClassifier(128, 64, early_stopping=True) after a hand-written ColumnTransformer "
                  f"(imputation, one-hot, scaling, date parts), rows without a target dropped",
                  f"- both: test accuracy on a stratified 30% held out, medians over seeds 0-{args.seeds - 1}; "
                  f"fit seconds as each side reports them (fusedtrain: its report's time line)",
                  f"- command: `python bench/bench_tables.py --seeds {args.seeds} --out {args.out}`", ""]
        with open(args.out, "w") as handle:
            handle.write("\n".join(header + lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
