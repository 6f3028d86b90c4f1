"""``qtsafe model``: inspect, manifest, verify, scan and gate model artifacts."""

from __future__ import annotations

import click

from qtsafe.cli.options import base_dir_option, finish, json_option, load

_FEATURES_HELP = "Feature names: comma-separated, or a file (one per line, JSON list, dataset .npz, manifest)."
_ARCH_HELP = "For a state_dict: the nn.Module class, module.path:Class or path/to/file.py:Class."


def _check_settings(ctx: click.Context, base_dir: str | None) -> None:
    """Read the settings as every command does, so a broken or missing config file stops these commands too.

    inspect, manifest, verify and scan use none of them and write nothing under the base directory: they
    read model files from the paths given, and a manifest goes beside its model.
    """
    load(ctx, {"base_dir": base_dir})


@click.group("model")
def model() -> None:
    """Model files: inspect without executing, verify the feature contract, gate offline.

    Every subcommand reads the config file (--config) and takes --base-dir like the other
    commands; only gate writes under the base directory (its reports).

    \b
    Examples:
      qtsafe model inspect /app/models/nhits_v20251212_232039.pkl
      qtsafe model scan /app/models --features unified_features.txt
      qtsafe model gate patchtst_v20260110_120000.pt --dataset data/patchtst.npz
    """


@model.command("inspect")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@base_dir_option
@json_option
@click.pass_context
def inspect_command(ctx: click.Context, files: tuple[str, ...], base_dir: str | None, as_json: bool) -> int:
    """Identify model files by their bytes and describe them without running them.

    \b
    Reports format, size, SHA-256, library/version, input features, tensor shapes, and
    the imports a pickle would perform (read as opcodes, never unpickled).
    Exit: 0 every file usable, 2 any file unusable (corrupt, truncated, unknown, unsafe).

    \b
    Examples:
      qtsafe model inspect xgboost_v20251213_001403.json
      qtsafe model inspect /app/models/*.pkl --json
    """
    from qtsafe.models.artifact import run_inspect
    from qtsafe.models.text import render_inspect_text

    _check_settings(ctx, base_dir)
    result = run_inspect(files)
    return finish(result, as_json, lambda: render_inspect_text(result))


@model.command("manifest")
@click.argument("file")
@click.option("--features", required=True, metavar="NAMES|FILE", help=_FEATURES_HELP)
@click.option("--input-shape", metavar="DIMS", help="e.g. -1,64,49 (default: -1,F for trees, -1,-1,F for torch).")
@click.option("--dtype", default="float32", show_default=True, help="Input dtype the model expects.")
@click.option("--label-rule", metavar="TEXT", help="How labels were made, e.g. 'up if close[t+12] > close[t]'.")
@click.option("--training-data", metavar="FILE", help="Training dataset; its SHA-256 goes into the manifest.")
@click.option("--architecture", metavar="MODULE:CLASS", help=_ARCH_HELP)
@click.option("--architecture-kwargs", metavar="JSON", help="Constructor arguments for --architecture.")
@click.option("--force", is_flag=True, help="Replace an existing manifest.")
@base_dir_option
@json_option
@click.pass_context
def manifest_command(ctx: click.Context, file: str, features: str, input_shape: str | None, dtype: str,
                     label_rule: str | None, training_data: str | None, architecture: str | None,
                     architecture_kwargs: str | None, force: bool, base_dir: str | None, as_json: bool) -> int:
    """Write FILE.manifest.json: the feature contract the model was trained with.

    \b
    Records ordered feature names and count, input shape, dtype, label rule, training-data
    checksum, library versions and the artifact's SHA-256. Refuses (exit 2) when the names
    contradict what the model records, or the file is unusable.

    \b
    Examples:
      qtsafe model manifest xgboost_v20251213_001403.json --features unified_features.txt
      qtsafe model manifest patchtst_v20260110_120000.pth --features data/patchtst.npz \\
          --input-shape -1,64,49 --architecture mymodels.patchtst:PatchTST
    """
    from qtsafe.models.manifest import run_manifest
    from qtsafe.models.text import render_manifest_text

    _check_settings(ctx, base_dir)
    result = run_manifest(file, features, input_shape=input_shape, dtype=dtype, label_rule=label_rule,
                          training_data=training_data, architecture=architecture,
                          architecture_kwargs=architecture_kwargs, force=force)
    return finish(result, as_json, lambda: render_manifest_text(result))


@model.command("verify")
@click.argument("file")
@click.option("--features", metavar="NAMES|FILE", help="The features the inference path produces. " + _FEATURES_HELP)
@click.option("--manifest", metavar="FILE", help="Manifest to check against (default: FILE.manifest.json).")
@base_dir_option
@json_option
@click.pass_context
def verify_command(ctx: click.Context, file: str, features: str | None, manifest: str | None, base_dir: str | None,
                   as_json: bool) -> int:
    """Check a model file against its manifest and/or the inference features.

    \b
    FAIL (2) on a feature count, name or order mismatch, a changed file (SHA-256), or a
    format the engine cannot load safely. WAIT (3) when there is no manifest and no --features.

    \b
    Examples:
      qtsafe model verify xgboost_v20251213_001403.json
      qtsafe model verify lightgbm_v20251213_001447.txt --features inference_features.txt
    """
    from qtsafe.models.text import render_verify_text
    from qtsafe.models.verify import run_verify

    _check_settings(ctx, base_dir)
    result = run_verify(file, features, manifest)
    return finish(result, as_json, lambda: render_verify_text(result))


@model.command("scan")
@click.argument("directory")
@click.option("--features", metavar="NAMES|FILE", help="Also check every model against these. " + _FEATURES_HELP)
@base_dir_option
@json_option
@click.pass_context
def scan_command(ctx: click.Context, directory: str, features: str | None, base_dir: str | None,
                 as_json: bool) -> int:
    """Inspect and verify the newest file of every model in a directory.

    \b
    Files are grouped by the fleet's naming {model}_v{YYYYmmdd_HHMMSS}.{pkl,pth,json,ubj,txt};
    the engine loads the newest per model, so that is the one judged.
    Exit: 0 all usable, 2 the newest of any model unusable, 3 a manifest missing (no --features).

    \b
    Examples:
      qtsafe model scan /app/models
      qtsafe model scan /app/models --features unified_features.txt --json
    """
    from qtsafe.models.scan import run_scan
    from qtsafe.models.text import render_scan_text

    _check_settings(ctx, base_dir)
    result = run_scan(directory, features)
    return finish(result, as_json, lambda: render_scan_text(result))


@model.command("gate")
@click.argument("file")
@click.option("--dataset", required=True, metavar="FILE", help="build-dataset .npz, or a CSV/Parquet features table.")
@click.option("--split", default="test", show_default=True, help="Rows to judge ('all' for every row).")
@click.option("--buy-above", type=float, default=0.6, show_default=True, help="Engine rule: BUY if P(up) > this.")
@click.option("--sell-below", type=float, default=0.4, show_default=True, help="Engine rule: SELL if P(up) < this.")
@click.option("--classes", metavar="A,B,C", help="Output order of a multi-class model, e.g. SELL,HOLD,BUY.")
@click.option("--output", "output_kind", type=click.Choice(["probability", "logit"]), default="probability",
              show_default=True, help="What a torch model emits.")
@click.option("--architecture", metavar="MODULE:CLASS", help=_ARCH_HELP)
@click.option("--architecture-kwargs", metavar="JSON", help="Constructor arguments for --architecture.")
@click.option("--min-rows", type=click.IntRange(min=1), help="Rows needed (default: thresholds.min_events_canary).")
@click.option("--name", help="Model name in the report (default: from {model}_v{ts}.ext).")
@base_dir_option
@json_option
@click.pass_context
def gate_command(ctx: click.Context, file: str, dataset: str, split: str, buy_above: float, sell_below: float,
                 classes: str | None, output_kind: str, architecture: str | None, architecture_kwargs: str | None,
                 min_rows: int | None, name: str | None, base_dir: str | None, as_json: bool) -> int:
    """Run a model on held-out data and apply the telemetry gate's per-model checks.

    \b
    Maps P(up) to BUY/SELL/HOLD with the engine's rule; confidence = max(p, 1 - p).
    A constant or collapsed model fails. Accuracy/AUC are reported when labels are present.
    Exit: 0 PASS, 2 FAIL or bad input.
    Report: reports/safety/model_gate_<model>_<UTC ts>.md (+ .json)

    \b
    Examples:
      qtsafe model gate xgboost_v20251213_001403.json --dataset data/xgb_test.parquet
      qtsafe model gate patchtst_v20260110_120000.pt2 --dataset data/patchtst.npz --json
    """
    from qtsafe.models.gate import EngineRule, parse_classes, run_model_gate
    from qtsafe.models.text import render_gate_text

    settings = load(ctx, {"base_dir": base_dir})
    rule = EngineRule(buy_above=buy_above, sell_below=sell_below, classes=parse_classes(classes))
    result = run_model_gate(settings, file, dataset, split=split, rule=rule, output=output_kind,
                            architecture=architecture, architecture_kwargs=architecture_kwargs,
                            min_rows=min_rows, name=name)
    return finish(result, as_json, lambda: render_gate_text(result))
