#!/usr/bin/python3
"""End-to-end benchmarks of issue 6: convex training against SGD, Adam and PyTorch.

Usage:
  tools/bench/run_benchmarks.py [--train DIR] [--test DIR] [--budget SECONDS]
                                [--subset N] [--out DIR] [--seed S] [--build DIR]
                                [--width M] [--skip-pytorch] [--resume] [--report-only]

Runs, one after the other and each with --seed S and a wall budget of --budget seconds:
  convex   `cvxcnn train` with the default preset (--beta auto), then fixed betas
           beta*/10, beta*/sqrt(10), sqrt(10) beta*, 10 beta* (beta* = the auto run's);
  sgd      `--solver sgd` at lr 1e-3 .. 1e-1 (5 points, 100x), --time-limit = budget;
  adam     `--solver adam` at lr 1e-4 .. 1e-2 (5 points, 100x), same;
  pytorch  tools/bench/pytorch_baseline.py with sgd and adam (skipped without torch);
then the Google Benchmark programs build/tools/bench/cvxcnn_bench_solver (solver
products against sgemm) and cvxcnn_bench_engine (on the convex auto model), when built;
last, relu: sgd and adam at the middle learning rate with --arch relu.
Every model is evaluated with `cvxcnn eval` on the test folder.

Writes into --out (default /tmp/bench-out):
  results.csv        one row per run (failed runs too, with their status)
  results.jsonl      the same, with the full training JSON of each model
  traces/NAME.csv    validation accuracy against wall time of each run
  logs/NAME.log      stderr of each command
  table.md           the summary table; sensitivity.png, accuracy_vs_time.png (matplotlib)
  solver_bench.json, engine_bench.txt

--subset N trains on the first N/10 images (sorted file names) of each class folder, for
quick runs; --test-subset N likewise for the test folder. --resume keeps the runs already in results.jsonl that succeeded;
--report-only rewrites table.md and the plots from results.jsonl.
Needs only python3 (Debian's /usr/bin/python3); the plots need python3-matplotlib, the PyTorch runs python3-torch.
"""

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Debian's interpreter: python3-matplotlib and python3-torch are its packages.
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
SGD_LRS = [1e-3, 10 ** -2.5, 1e-2, 10 ** -1.5, 1e-1]
ADAM_LRS = [1e-4, 10 ** -3.5, 1e-3, 10 ** -2.5, 1e-2]
BETA_FACTORS = [0.1, 10 ** -0.5, 1.0, 10 ** 0.5, 10.0]
CSV_FIELDS = ["name", "method", "arch", "param", "value", "seed", "status", "wall_s", "train_time_s",
              "objective", "rel_gap", "filters", "iterations_or_epochs", "train_accuracy", "val_accuracy",
              "test_accuracy", "error"]


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 1 (the repository's convention for bad arguments)
        sys.stderr.write(f"run_benchmarks.py: {message} (see --help)\n")
        sys.exit(1)


def parse_args():
    parser = ArgumentParser(description=__doc__.split("\n")[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="Example (the README's reduced run):\n"
                                   "  tools/bench/run_benchmarks.py --budget 60 --subset 10000 --test-subset 2000 --out /tmp/bench-out")
    parser.add_argument("--train", default="/tmp/fm/train", help="training image folder (default /tmp/fm/train)")
    parser.add_argument("--test", default="/tmp/fm/test", help="test image folder (default /tmp/fm/test)")
    parser.add_argument("--budget", type=float, default=540.0, help="wall seconds per training run (default 540)")
    parser.add_argument("--subset", type=int, default=0, help="train on N images (N/10 per class); 0 = all")
    parser.add_argument("--test-subset", type=int, default=0,
                        help="test on N images (N/10 per class); 0 = all (evaluating thousands of filters is slow)")
    parser.add_argument("--out", default="/tmp/bench-out", help="output folder (default /tmp/bench-out)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every run (default 1)")
    parser.add_argument("--build", default=str(ROOT / "build"), help="build folder with cvxcnn (default build/)")
    parser.add_argument("--width", type=int, default=64, help="filters of the SGD/Adam/PyTorch networks (default 64)")
    parser.add_argument("--skip-pytorch", action="store_true", help="do not run the PyTorch baseline")
    parser.add_argument("--resume", action="store_true", help="keep the successful runs of results.jsonl")
    parser.add_argument("--report-only", action="store_true", help="only rewrite table.md and the plots")
    parser.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)  # run_benchmarks.sh, before building
    args = parser.parse_args()
    if args.budget <= 0:
        parser.error(f"--budget {args.budget}: must be positive")
    for name in ("subset", "test_subset"):
        value = getattr(args, name)
        if value < 0 or (value and value < 10):
            parser.error(f"--{name.replace('_', '-')} {value}: must be 0 (all) or at least 10")
    if args.width < 1:
        parser.error(f"--width {args.width}: must be positive")
    return args


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- data ------------------------------------------------------------------------------

def ensure_data(args, cvxcnn):
    train, test = Path(args.train), Path(args.test)
    if train.is_dir() and test.is_dir():
        return
    if train.parent != test.parent or train.name != "train" or test.name != "test":
        sys.exit(f"run_benchmarks.py: {train} or {test} is missing (only the default layout DIR/train, DIR/test is imported)")
    log(f"importing Fashion-MNIST into {train.parent}")
    subprocess.run([cvxcnn, "-q", "import", "fashion-mnist", "/work/shared/data/fashion-mnist", str(train.parent)],
                   check=True)


def make_subset(train, n, out):
    """A folder of symbolic links to the first n/10 files (sorted) of each class folder."""
    folder = out / f"{train.name}-subset-{n}"
    classes = sorted(d.name for d in train.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = n // len(classes)
    if folder.is_dir():
        shutil.rmtree(folder)
    for name in classes:
        (folder / name).mkdir(parents=True)
        for file in sorted(f for f in (train / name).iterdir() if not f.name.startswith("."))[:per_class]:
            (folder / name / file.name).symlink_to(file.resolve())
    return folder, per_class


# ---- running one configuration -------------------------------------------------------

def run_command(command, log_path, timeout):
    """Runs a command; returns (returncode or None on timeout, stdout, wall seconds)."""
    start = time.monotonic()
    with open(log_path, "w") as err:
        err.write("$ " + " ".join(str(c) for c in command) + "\n")
        err.flush()
        try:
            done = subprocess.run([str(c) for c in command], stdout=subprocess.PIPE, stderr=err, text=True,
                                  timeout=timeout)
            return done.returncode, done.stdout, time.monotonic() - start
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return None, out, time.monotonic() - start


CONVEX_LINE = re.compile(r"beta (\S+)\s+iter\s+(\d+)\s+objective (\S+)\s+gap (\S+)\s+filters (\d+)\s+"
                         r"train (\S+)%\s+val (\S+?)%?\s+(\d+)s")


def convex_trace(log_path, training):
    """(time_s, val_accuracy, objective, rel_gap, filters) from the progress lines (every 5 s)."""
    rows = []
    for line in Path(log_path).read_text(errors="replace").splitlines():
        m = CONVEX_LINE.search(line)
        if m and m.group(7) != "-":
            rows.append([float(m.group(8)), float(m.group(7)) / 100, float(m.group(3)), float(m.group(4)),
                         int(m.group(5))])
    if training:
        rows.append([training.get("time_s"), training.get("val_accuracy"), training.get("objective"),
                     training.get("relative_duality_gap"), training.get("filters")])
    return ["time_s", "val_accuracy", "objective", "rel_gap", "filters"], rows


def sgd_trace(training):
    rows = [[h.get("time_s"), h.get("val_accuracy"), h.get("objective"), "", ""] for h in training.get("history", [])]
    return ["time_s", "val_accuracy", "objective", "rel_gap", "filters"], rows


def write_trace(out, name, header, rows):
    with open(out / "traces" / f"{name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def evaluate(cvxcnn, model, test, log_path, timeout):
    code, stdout, _ = run_command([cvxcnn, "-q", "eval", model, test, "--json"], log_path, timeout)
    if code != 0:
        raise RuntimeError(f"eval exited {code}")
    return json.loads(stdout)["accuracy"]


def model_training(cvxcnn, model, log_path):
    code, stdout, _ = run_command([cvxcnn, "-q", "info", model, "--json"], log_path, 120)
    if code != 0:
        raise RuntimeError(f"info exited {code}")
    info = json.loads(stdout)
    return info.get("training", info.get("model", {}).get("training", {}))


def cvxcnn_run(ctx, name, method, arch, param, value, extra):
    """One `cvxcnn train` run, its test accuracy and trace, as a result row (never raises)."""
    out, args = ctx["out"], ctx["args"]
    model = out / "models" / f"{name}.cvx"
    row = {"name": name, "method": method, "arch": arch, "param": param, "value": value, "seed": args.seed,
           "status": "failed", "error": ""}
    command = [ctx["cvxcnn"], "train", ctx["train"], "--out", model, "--seed", args.seed, "--arch", arch,
               "--time-limit", args.budget, *extra]
    if method == "convex":
        command += ["--checkpoint-every", 0]
    log(f"{name}: {' '.join(str(c) for c in command[1:])}")
    try:
        code, _, wall = run_command(command, out / "logs" / f"{name}.log", timeout=3 * args.budget + 600)
        row["wall_s"] = round(wall, 1)
        if code is None:
            raise RuntimeError("timed out")
        if code != 0:
            raise RuntimeError(f"train exited {code}: " + last_line(out / "logs" / f"{name}.log"))
        training = model_training(ctx["cvxcnn"], model, out / "logs" / f"{name}.info.log")
        row["training"] = training
        row["status"] = training.get("status", "ok")
        row["train_time_s"] = training.get("time_s")
        row["objective"] = training.get("objective")
        row["rel_gap"] = training.get("relative_duality_gap", "")
        row["filters"] = training.get("filters")
        row["iterations_or_epochs"] = training.get("iterations", training.get("epochs_done"))
        row["train_accuracy"] = training.get("train_accuracy")
        row["val_accuracy"] = training.get("val_accuracy")
        header, rows = convex_trace(out / "logs" / f"{name}.log", training) if method == "convex" else sgd_trace(training)
        write_trace(out, name, header, rows)
        row["test_accuracy"] = evaluate(ctx["cvxcnn"], model, ctx["test"], out / "logs" / f"{name}.eval.log",
                                        timeout=1800)
        row["ok"] = True
    except Exception as e:  # a failing run is a row, not a crash
        row["error"] = str(e)
        row["ok"] = False
        log(f"{name}: FAILED: {e}")
    if row.get("ok"):
        log(f"{name}: test {100 * row['test_accuracy']:.2f}%  wall {row['wall_s']} s  status {row['status']}")
    return row


def pytorch_run(ctx, name, optimizer, lr):
    out, args = ctx["out"], ctx["args"]
    row = {"name": name, "method": f"pytorch-{optimizer}", "arch": "conv3x3s1p1-relu-pool7", "param": "lr",
           "value": lr, "seed": args.seed, "status": "failed", "error": ""}
    command = [PYTHON, ROOT / "tools/bench/pytorch_baseline.py", "--data", "/work/shared/data/fashion-mnist",
               "--optimizer", optimizer, "--lr", lr, "--budget", args.budget, "--width", args.width,
               "--seed", args.seed, "--threads", os.cpu_count() or 2]
    if ctx["per_class"]:
        command += ["--per-class", ctx["per_class"]]
    if ctx["test_per_class"]:
        command += ["--test-per-class", ctx["test_per_class"]]
    log(f"{name}: {' '.join(str(c) for c in command[1:])}")
    try:
        code, stdout, wall = run_command(command, out / "logs" / f"{name}.log", timeout=3 * args.budget + 600)
        row["wall_s"] = round(wall, 1)
        if code != 0:
            raise RuntimeError(f"exited {code}: " + last_line(out / "logs" / f"{name}.log"))
        result = json.loads(stdout)
        row["training"] = result
        row.update({k: result.get(k) for k in ("status", "objective", "train_accuracy", "val_accuracy",
                                               "test_accuracy", "filters")})
        row["train_time_s"] = result.get("time_s")
        row["iterations_or_epochs"] = result.get("epochs_done")
        write_trace(out, name, ["time_s", "val_accuracy", "objective", "rel_gap", "filters"],
                    [[h["time_s"], h["val_accuracy"], h["objective"], "", ""] for h in result.get("history", [])])
        row["ok"] = True
        log(f"{name}: test {100 * row['test_accuracy']:.2f}%  wall {row['wall_s']} s")
    except Exception as e:
        row["error"] = str(e)
        row["ok"] = False
        log(f"{name}: FAILED: {e}")
    return row


def last_line(path):
    lines = [l for l in Path(path).read_text(errors="replace").splitlines() if l.strip()]
    return lines[-1][:300] if lines else ""


# ---- results --------------------------------------------------------------------------

def load_rows(out):
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_rows(out, rows):
    with open(out / "results.jsonl.tmp", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(out / "results.jsonl.tmp", out / "results.jsonl")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: fmt(row.get(k, "")) for k in CSV_FIELDS})


def fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def pct(x):
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else "-"


def num(x, spec=".4g"):
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def ok_rows(rows, method=None, arch=None):
    return [r for r in rows if r.get("ok") and (method is None or r["method"] == method)
            and (arch is None or r["arch"] == arch)]


# ---- micro-benchmarks -----------------------------------------------------------------

def run_solver_bench(ctx):
    binary = Path(ctx["args"].build) / "tools/bench/cvxcnn_bench_solver"
    if not binary.exists():
        log(f"solver benchmark: {binary} not built (cmake -DCVXCNN_BUILD_BENCH=ON); skipped")
        return
    log("solver benchmark (sgemm and solver products, one run)")
    out = ctx["out"]
    code, stdout, _ = run_command([binary, f"--benchmark_out={out / 'solver_bench.json'}",
                                   "--benchmark_out_format=json", "--benchmark_color=false"], out / "logs" / "solver_bench.log", 3600)
    (out / "solver_bench.txt").write_text(stdout)
    if code != 0:
        log(f"solver benchmark: exited {code}")


def run_engine_bench(ctx, model):
    binary = Path(ctx["args"].build) / "tools/bench/cvxcnn_bench_engine"
    if not binary.exists() or not model.exists():
        log("engine benchmark: binary or convex model missing; skipped")
        return
    log("engine benchmark on the convex auto model")
    out = ctx["out"]
    code, stdout, _ = run_command([binary, f"--model={model}", f"--benchmark_out={out / 'engine_bench.json'}",
                                   "--benchmark_out_format=json", "--benchmark_color=false"], out / "logs" / "engine_bench.log", 3600)
    (out / "engine_bench.txt").write_text(stdout)
    if code != 0:
        log(f"engine benchmark: exited {code}")


def bench_counters(path):
    """{benchmark name: its JSON entry} of a Google Benchmark --benchmark_out file."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return {b["name"]: b for b in data.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"}


# ---- report ---------------------------------------------------------------------------

def spread(rows):
    accs = [r["test_accuracy"] for r in rows]
    return (max(accs) - min(accs)) if len(accs) >= 2 else None


def report(out, args):
    rows = load_rows(out)
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
    lines = [f"Command: `{meta.get('command', '?')}`  ",
             f"Data: {meta.get('train_images', '?')} training images ({meta.get('data', '')}, 10% held out for "
             f"validation), {meta.get('test_images', 'all')} test images ({meta.get('test', '?')}); budget {meta.get('budget', '?')} s per run; seed {meta.get('seed', '?')}; "
             f"{meta.get('cores', '?')} cores, load average at start {meta.get('load_start', '?')}, "
             f"at end {meta.get('load_end', '?')} (the runs' own threads count in it: about 2 on an otherwise idle "
             "machine).", ""]

    convex = ok_rows(rows, "convex")
    lines += ["### 1. Convex training", "",
              "| run | beta | test | val | wall s | objective | rel. gap | filters | iterations | status |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    convex_rows = [r for r in rows if r["method"] == "convex"]
    convex_rows.sort(key=lambda r: (r["name"] != "convex-auto", r.get("value") or 0))
    for r in convex_rows:
        if not r.get("ok"):
            lines.append(f"| {r['name']} | {num(r.get('value'))} | failed: {r.get('error', '')} | | | | | | | |")
            continue
        lines.append(f"| {r['name']} | {num(r['value'])} | **{pct(r['test_accuracy'])}** | {pct(r['val_accuracy'])} | "
                     f"{num(r['wall_s'], '.0f')} | {num(r['objective'])} | {num(r['rel_gap'], '.3g')} | "
                     f"{r['filters']} | {r['iterations_or_epochs']} | {r['status']} |")

    lines += ["", "### 2. At equal wall time: best and worst test accuracy over the learning rates", "",
              "| method | arch | runs | best (lr) | worst (lr) | spread | mean wall s |", "|---|---|---|---|---|---|---|"]
    auto = next((r for r in convex if r["name"] == "convex-auto"), None)
    if auto:
        lines.append(f"| convex (`--beta auto`) | {auto['arch']} | 1 | {pct(auto['test_accuracy'])} | | | "
                     f"{num(auto['wall_s'], '.0f')} |")
    groups = []
    for r in rows:
        key = (r["method"], r["arch"])
        if r["method"] != "convex" and key not in groups:
            groups.append(key)
    best_baseline = None
    for method, arch in groups:
        group = ok_rows(rows, method, arch)
        failed = len([r for r in rows if r["method"] == method and r["arch"] == arch and not r.get("ok")])
        if not group:
            lines.append(f"| {method} | {arch} | 0 ({failed} failed) | - | - | - | - |")
            continue
        best = max(group, key=lambda r: r["test_accuracy"])
        worst = min(group, key=lambda r: r["test_accuracy"])
        best_baseline = best if best_baseline is None or best["test_accuracy"] > best_baseline["test_accuracy"] \
            else best_baseline
        lines.append(f"| {method} | {arch} | {len(group)}{f' ({failed} failed)' if failed else ''} | "
                     f"{pct(best['test_accuracy'])} ({num(best['value'], '.2g')}) | "
                     f"{pct(worst['test_accuracy'])} ({num(worst['value'], '.2g')}) | "
                     f"{num(100 * spread(group), '.2f') + ' pt' if spread(group) is not None else '-'} | "
                     f"{num(sum(r['wall_s'] for r in group) / len(group), '.0f')} |")

    lines += ["", "### 3. Sensitivity (plot: sensitivity.png)", ""]
    sens = [r for r in convex if r["param"] == "beta" and r["name"] != "convex-auto"]
    convex_spread = spread(sens)
    sgd_spreads = {f"{m} ({a})": spread(ok_rows(rows, m, a)) for m, a in groups
                   if m in ("sgd", "adam") and len(ok_rows(rows, m, a)) >= 5}
    lines.append(f"Convex test accuracy over beta in [beta*/10, 10 beta*] ({len(sens)} runs): spread "
                 f"{num(100 * convex_spread, '.2f') if convex_spread is not None else '-'} points; "
                 + "; ".join(f"{k} over lr (100x): {num(100 * v, '.2f')} points" for k, v in sgd_spreads.items()
                             if v is not None) + ".")

    lines += ["", "### 4. Accuracy against wall time (plot: accuracy_vs_time.png)", "",
              "Validation accuracy during training: convex from its progress lines (every 5 s; the convex "
              "model records no time trace), SGD/Adam from the model's per-epoch history, PyTorch per epoch.", ""]

    lines += ["### 5. Solver efficiency", ""]
    solver = bench_counters(out / "solver_bench.json")
    eff = None
    if solver:
        lines += ["| benchmark | GFLOP/s |", "|---|---|"]
        for name, b in solver.items():
            if "GFLOPS" in b:
                lines.append(f"| {name} | {b['GFLOPS'] / 1e9 if b['GFLOPS'] > 1e6 else b['GFLOPS']:.1f} |")
        gf = {n: (b["GFLOPS"] / 1e9 if b["GFLOPS"] > 1e6 else b["GFLOPS"]) for n, b in solver.items() if "GFLOPS" in b}
        sgemm = max((v for n, v in gf.items() if n.startswith("sgemm")), default=None)
        shape = max((v for n, v in gf.items() if n.startswith("shape")), default=None)
        solve = max((v for n, v in gf.items() if n.startswith("solver")), default=None)
        if sgemm and solve:
            eff = solve / sgemm
            lines += ["", f"Solver products / best square sgemm (same run): **{100 * eff:.0f}%**"]
        if shape and solve:
            lines += [f"Solver products / oneDNN's sgemm on the solver's own shapes (same run): "
                      f"**{100 * solve / shape:.0f}%**"]
        read = next((b["GBps"] / (1e9 if b["GBps"] > 1e6 else 1) for n, b in solver.items()
                     if n.startswith("memory/read_F") and "GBps" in b), None)
        if read and solve:
            # One solver pass does 4 C flops per 4-byte entry of F (C = 10, the benchmark's default).
            roofline = 10 * read
            lines += [f"Memory roofline of the solver's passes over F: 10 flops per byte x {read:.1f} GB/s read "
                      f"= {roofline:.0f} GFLOP/s; solver products / roofline: **{100 * solve / roofline:.0f}%**"]
    else:
        lines.append("not run (build with -DCVXCNN_BUILD_BENCH=ON)")

    lines += ["", "### 6. Inference on the convex auto model (batch 64)", ""]
    engine = bench_counters(out / "engine_bench.json")
    if engine:
        lines += ["| batch | engine images/s | reference images/s | ratio |", "|---|---|---|---|"]
        for batch in (1, 64):
            e, r = engine.get(f"engine/batch:{batch}/real_time"), engine.get(f"reference/batch:{batch}/real_time")
            if e and r:
                lines.append(f"| {batch} | {e['items_per_second']:.0f} | {r['items_per_second']:.0f} | "
                             f"{e['items_per_second'] / r['items_per_second']:.1f}x |")
    else:
        lines.append("not run")

    lines += ["", "### Targets", ""]
    if auto and best_baseline:
        met = auto["test_accuracy"] >= best_baseline["test_accuracy"]
        lines.append(f"- convex accuracy {pct(auto['test_accuracy'])} >= best baseline {pct(best_baseline['test_accuracy'])} "
                     f"({best_baseline['name']}): **{'met' if met else 'not met'}**")
    if convex_spread is not None and sgd_spreads:
        worst_sgd = min(v for v in sgd_spreads.values() if v is not None)
        lines.append(f"- convex spread {100 * convex_spread:.2f} pt < every SGD/Adam spread (smallest "
                     f"{100 * worst_sgd:.2f} pt): **{'met' if convex_spread < worst_sgd else 'not met'}**")
    if eff is not None:
        lines.append(f"- solver products >= 60% of sgemm: {100 * eff:.0f}%: **{'met' if eff >= 0.6 else 'not met'}**")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plots(out, rows)
    log(f"wrote {out / 'table.md'}")


def plots(out, rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not importable (apt-get install python3-matplotlib): plots skipped")
        return
    # Sensitivity: accuracy against the parameter relative to its centre.
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    series = [("convex", None, "beta / beta*", "o-")]
    for method, arch in sorted({(r["method"], r["arch"]) for r in rows if r["method"] in ("sgd", "adam")}):
        series.append((method, arch, "lr / middle lr", "s--"))
    for method, arch, _, style in series:
        group = [r for r in ok_rows(rows, method, arch) if r["param"] in ("beta", "lr")]
        if method == "convex":
            group = [r for r in group if r["param"] == "beta" and r["name"] != "convex-auto"]
        if len(group) < 2:
            continue
        values = sorted(r["value"] for r in group)
        centre = values[len(values) // 2]
        group.sort(key=lambda r: r["value"])
        ax.plot([r["value"] / centre for r in group], [100 * r["test_accuracy"] for r in group], style,
                label=f"{method}" + (f" ({arch})" if arch and method != "convex" else " (beta)"))
    ax.set_xscale("log")
    ax.set_xlabel("hyper-parameter / centre of its range (beta*, or the middle lr)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Sensitivity: convex over beta vs SGD/Adam over lr")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sensitivity.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    chosen = [r for r in ok_rows(rows) if r["name"] == "convex-auto"]
    fixed = [r for r in ok_rows(rows, "convex") if r["name"] != "convex-auto"]
    if fixed:
        chosen.append(max(fixed, key=lambda r: r["test_accuracy"]))
    for method, arch in sorted({(r["method"], r["arch"]) for r in ok_rows(rows) if r["method"] != "convex"}):
        group = ok_rows(rows, method, arch)
        chosen.append(max(group, key=lambda r: r["test_accuracy"]))
    for r in chosen:
        path = out / "traces" / f"{r['name']}.csv"
        if not path.exists():
            continue
        with open(path) as f:
            points = [(float(p["time_s"]), 100 * float(p["val_accuracy"])) for p in csv.DictReader(f)
                      if p["time_s"] not in ("", "None") and p["val_accuracy"] not in ("", "None")]
        if points:
            ax.plot(*zip(*points), "o-" if r["method"] == "convex" else ".--", markersize=3, label=r["name"])
    ax.set_ylim(bottom=70)  # the first convex check (all weights zero) sits at chance level
    ax.set_xlabel("wall time since start of training (s)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Accuracy against wall time (convex auto and best beta; best lr of each baseline)", fontsize=9)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_time.png")
    plt.close(fig)


# ---- main -----------------------------------------------------------------------------

def main():
    args = parse_args()
    if args.check_args:
        return
    out = Path(args.out)
    if args.report_only:
        if not (out / "results.jsonl").exists():
            sys.exit(f"run_benchmarks.py: {out / 'results.jsonl'} not found")
        report(out, args)
        return
    cvxcnn = Path(args.build) / "cvxcnn"
    if not cvxcnn.exists():
        sys.exit(f"run_benchmarks.py: {cvxcnn} not found; build first: cmake -S . -B build -DCVXCNN_BUILD_BENCH=ON "
                 "&& cmake --build build -j2")
    for sub in ("logs", "traces", "models", "bin"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # A private copy, so that rebuilding during a long run cannot swap the binary under it.
    shutil.copy2(cvxcnn, out / "bin" / "cvxcnn")
    cvxcnn = out / "bin" / "cvxcnn"
    ensure_data(args, cvxcnn)
    train, per_class = Path(args.train), 0
    if args.subset:
        train, per_class = make_subset(train, args.subset, out)
    test, test_per_class = Path(args.test), 0
    if args.test_subset:
        test, test_per_class = make_subset(test, args.test_subset, out)
    meta = {"command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]), "budget": args.budget,
            "seed": args.seed, "data": str(train), "test": str(test), "test_images": args.test_subset or "all", "cores": os.cpu_count(),
            "train_images": args.subset or "all", "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    ctx = {"args": args, "out": out, "cvxcnn": cvxcnn, "train": train, "test": test, "per_class": per_class,
           "test_per_class": test_per_class}

    rows = load_rows(out) if args.resume else []
    done = {r["name"]: r for r in rows if r.get("ok")}
    rows = list(done.values())

    def record(row):
        rows[:] = [r for r in rows if r["name"] != row["name"]] + [row]
        save_rows(out, rows)

    def run(name, *spec):
        if name in done:
            log(f"{name}: kept from results.jsonl")
            return done[name]
        row = cvxcnn_run(ctx, name, *spec)
        record(row)
        return row

    arch = "default"
    auto = run("convex-auto", "convex", arch, "beta", None, [])
    beta_star = auto.get("training", {}).get("beta") if auto.get("ok") else None
    if auto.get("ok"):
        auto["value"] = beta_star
        record(auto)
    # The baselines at their middle learning rate first, so that a short session has the
    # essential comparison; the rest of each grid after.
    order = [2, 0, 4, 1, 3]
    for i in order:
        run(f"sgd-lr{SGD_LRS[i]:.3g}", "sgd", arch, "lr", SGD_LRS[i],
            ["--solver", "sgd", "--lr", SGD_LRS[i], "--epochs", 100000, "--width", args.width])
        run(f"adam-lr{ADAM_LRS[i]:.3g}", "adam", arch, "lr", ADAM_LRS[i],
            ["--solver", "adam", "--lr", ADAM_LRS[i], "--epochs", 100000, "--width", args.width])
        if i == 2:
            for f in (0.1, 10.0):
                if beta_star:
                    run(f"convex-beta{f:g}x", "convex", arch, "beta", beta_star * f, ["--beta", beta_star * f])
    for f in BETA_FACTORS:
        if beta_star and f not in (0.1, 10.0):
            name = "convex-beta1x" if f == 1.0 else f"convex-beta{f:.3g}x"
            run(name, "convex", arch, "beta", beta_star * f, ["--beta", beta_star * f])
    if not beta_star:
        log("no beta* (the auto run failed): sensitivity runs skipped")

    if args.skip_pytorch:
        log("PyTorch baseline skipped (--skip-pytorch)")
    elif subprocess.run([PYTHON, "-c", "import torch"], capture_output=True).returncode != 0:
        log("PyTorch baseline skipped: torch is not importable (apt-get install python3-torch)")
    else:
        for optimizer, lr in (("adam", 1e-3), ("sgd", 1e-2)):
            name = f"pytorch-{optimizer}-lr{lr:g}"
            if name in done:
                continue
            record(pytorch_run(ctx, name, optimizer, lr))

    run_solver_bench(ctx)
    run_engine_bench(ctx, out / "models" / "convex-auto.cvx")
    # ReLU (the `relu` preset) for SGD and Adam at their middle learning rates.
    run("sgd-relu-lr0.01", "sgd", "relu", "lr", 1e-2,
        ["--solver", "sgd", "--lr", 1e-2, "--epochs", 100000, "--width", args.width])
    run("adam-relu-lr0.001", "adam", "relu", "lr", 1e-3,
        ["--solver", "adam", "--lr", 1e-3, "--epochs", 100000, "--width", args.width])
    meta["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    report(out, args)
    failed = [r["name"] for r in rows if not r.get("ok")]
    log(f"{len(rows) - len(failed)} of {len(rows)} runs succeeded" + (f"; failed: {', '.join(failed)}" if failed else ""))
    if rows and len(failed) == len(rows):
        sys.exit(1)  # nothing worked: most likely the set-up, not one configuration


if __name__ == "__main__":
    main()
