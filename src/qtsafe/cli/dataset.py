"""``qtsafe build-dataset``: parse the options, call :func:`qtsafe.dataset.run_build_dataset`, exit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from qtsafe.cli.options import base_dir_option, finish, json_option, load
from qtsafe.dataset.defaults import DEFAULT_FEATURES, DEFAULT_SPLIT, RULES
from qtsafe.errors import ConfigError
from qtsafe.extras import require

# The parsers and the builder import numpy and pandas: they load when an option is parsed or the command runs,
# not for --help.


def _library(module: str, name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(require(module, "build-dataset"), name)(*args, **kwargs)

    return call


parse_source = _library("qtsafe.dataset.sources", "parse_source")
parse_span = _library("qtsafe.dataset.candles", "parse_span")
parse_symbols = _library("qtsafe.dataset.candles", "parse_symbols")
parse_split = _library("qtsafe.dataset.splits", "parse_split")


def _via(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Run a library parser as a Click callback, so a bad value is a usage error naming the option."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).split(": ", 1)[-1]) from exc

    return callback


@click.command("build-dataset", epilog="""\b
Examples:
  qtsafe build-dataset                                  # synthetic demo data, no database needed
  qtsafe build-dataset --source sqlite:/opt/quantum/data/market.db --symbols BTCUSDT,ETHUSDT
  qtsafe build-dataset --source parquet:data/universe --interval 5m --label-rule barrier
  qtsafe build-dataset --split 2025-11-01,2025-12-01 --embargo 1d --normalize window --json

\b
Exit codes: 0 written, 2 bad input / too little data / a leakage check failed,
3 one class above 90 % of train (nothing written; see --allow-imbalance).""")
@click.option("--source", default="synthetic", show_default=True, callback=_via(parse_source),
              help="synthetic | sqlite:PATH (table market_data) | csv:DIR | parquet:DIR ({symbol}.csv/.parquet).")
@click.option("--symbols", callback=_via(parse_symbols), help="Comma-separated symbols (default: all in the source).")
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True, help="Days up to the newest bar.")
@click.option("--interval", callback=_via(lambda v: parse_span(v, "--interval")),
              help="Bar interval, e.g. 5m or 1h (default: inferred; synthetic 1h).")
@click.option("--lookback", type=click.IntRange(2, 4096), default=64, show_default=True, help="Bars per window (T).")
@click.option("--horizon", default="4h", show_default=True, callback=_via(lambda v: parse_span(v, "--horizon")),
              help="Label horizon, converted to bars by the interval.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01,
              show_default=True, help="Rise that makes a label 1 (0.01 = 1 %).")
@click.option("--label-rule", type=click.Choice(list(RULES)), default="close", show_default=True,
              help="close: close at t+h vs close at t; barrier: high touches +threshold within h.")
@click.option("--split", default=DEFAULT_SPLIT, show_default=True, callback=_via(parse_split),
              help="train,val,test fractions of the common range, or two UTC cutoffs VAL_START,TEST_START.")
@click.option("--purge", callback=_via(lambda v: parse_span(v, "--purge")),
              help="Gap before each cutoff with no sample (default and minimum: the horizon).")
@click.option("--embargo", default="0", show_default=True,
              callback=_via(lambda v: parse_span(v, "--embargo", allow_zero=True)),
              help="Gap after each cutoff with no sample, e.g. 1d.")
@click.option("--normalize", type=click.Choice(["train", "window"]), default="train", show_default=True,
              help="train: mean/std of train rows, stored; window: per window (RevIN-style).")
@click.option("--features", default=",".join(DEFAULT_FEATURES), show_default=True,
              callback=_via(lambda v: tuple(p.strip() for p in v.split(",") if p.strip())), help="Features, in order.")
@click.option("--allow-imbalance", is_flag=True, help="Write the dataset even if one class is above 90 % of train.")
@click.option("--mask-invalid", is_flag=True, help="Drop corrupt bars (NaN/non-positive prices, high < low) like gaps "
              "instead of refusing the source.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the synthetic generator.")
@base_dir_option
@json_option
@click.pass_context
def build_dataset(ctx: click.Context, base_dir: str | None, as_json: bool, source: Any, interval: int | None,
                  horizon: int, purge: int | None, embargo: int, **options: Any) -> int:
    """Build leak-free (N, T, F) PatchTST sequences from OHLCV candles."""
    DatasetRequest = require("qtsafe.dataset.builder", "build-dataset").DatasetRequest
    run_build_dataset = require("qtsafe.dataset.run", "build-dataset").run_build_dataset
    settings = load(ctx, {"base_dir": base_dir})
    request = DatasetRequest(source=source, interval_s=interval, horizon_s=horizon, purge_s=purge, embargo_s=embargo,
                             symbols=options.pop("symbols") or (), **options)
    result = run_build_dataset(settings, request)
    return finish(result, as_json, result.render_text)
