"""``autovision monitor``: one drift check of a deployment's logged predictions against its model's test split."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from autovision.cli._console import ModelArgument, console, fail

app = typer.Typer()

# ``autovision serve`` logs under this namespace (the contract's prediction_log_prefix).
LOCAL_NAMESPACE = "local"


@app.command(name="monitor")
def monitor_command(
    model: ModelArgument,
    *,
    deployment: Annotated[str, typer.Option(help="The deployment (or locally served model name) that logged.")],
    namespace: Annotated[str, typer.Option(help="Its namespace; `local` for `autovision serve`.")] = LOCAL_NAMESPACE,
    window_minutes: Annotated[int, typer.Option(min=1, help="The window checked: this many minutes up to now.")] = 60,
    model_name: Annotated[
        str, typer.Option(help="Compare only records logged by this model (as the log names it); all when empty.")
    ] = "",
    alpha: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Chance of calling in-distribution traffic drift.")
    ] = 0.05,
) -> None:
    """Compare the last window of logged predictions with the model's test split; print and store the verdict.

    Exits 0 whatever the verdict (Drift, NoDrift or Unknown: too little traffic); non-zero only when the
    check cannot run.
    """
    from autovision.contract.keys import drift_report_key, prediction_log_prefix
    from autovision.export.layout import ModelNotFoundError, locate_model
    from autovision.monitor.check import ReferenceMissingError, check_drift, read_reference
    from autovision.monitor.drift import DriftSettings
    from autovision.storage import Storage, StorageError

    try:
        location = locate_model(model)
        reference = read_reference(location)
        storage = Storage.from_settings(location.storage.settings)
        prefix = prediction_log_prefix(namespace, deployment)
        report = check_drift(
            storage,
            prefix,
            reference,
            window_minutes=window_minutes,
            now=dt.datetime.now(dt.UTC),
            model=model_name,
            settings=DriftSettings(alpha=alpha),
        )
    except (ModelNotFoundError, ReferenceMissingError, StorageError, ValueError) as error:
        fail(str(error))
    table = Table("aspect", "test", "statistic", "p-value", "drift", title=f"{report.status}: {report.reason}")
    for test in report.tests:
        table.add_row(test.aspect, test.method, f"{test.statistic:.4g}", f"{test.p_value:.4g}", str(test.drift))
    console.print(table)
    console.print(
        f"{report.predictions} logged predictions from {report.window_start} to {report.window_end} against "
        f"{report.reference_predictions} test images; p-value threshold {report.threshold:.4g}"
    )
    console.print(f"written to {storage.uri(drift_report_key(prefix))}")
