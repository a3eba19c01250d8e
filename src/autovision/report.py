"""report.html: the evaluation as one self-contained page that opens offline.

Everything is inline: CSS in a ``<style>`` element, charts as SVG, thumbnails as
``data:`` URIs. No script, no font, no stylesheet is fetched, so the file can be
mailed, archived with the model, or opened on an air-gapped machine.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from PIL import Image, UnidentifiedImageError

from autovision.evaluate.tables import PER_LABEL_COLUMNS, format_metric, per_label_rows, summary_rows

# Tableau 10: distinguishable label colours; the micro-average curve gets its own.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
)
MICRO_COLOUR = "#d62728"
HEATMAP_LOW = (247, 251, 255)
HEATMAP_HIGH = (8, 48, 107)
MAX_LEGEND_LABELS = 20
THUMBNAIL_SIZE = 96

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1b1b1b; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: .9rem; } td, th { padding: .25rem .7rem; text-align: right; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafbfc; } tr.chosen td { background: #fff3cd; font-weight: 600; }
.facts td { text-align: left; } .muted { color: #666; font-size: .85rem; }
.charts { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
.mistakes { display: flex; flex-wrap: wrap; gap: 1rem; }
.mistake img.heatmap { margin-top: .3rem; }
.mistake { width: 150px; font-size: .8rem; } .mistake img { width: 96px; height: 96px; object-fit: contain;
  image-rendering: pixelated; background: #eee; display: block; } .mistake .uri { word-break: break-all; color: #666; }
"""


def thumbnail_data_uri(data: bytes, size: int = THUMBNAIL_SIZE) -> str | None:
    """A PNG data: URI of an image fitted into size x size; None when the bytes do not decode."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    scale = size / max(image.size)
    # Tiny images (say 8x8 digits) are enlarged with hard pixel edges, large ones smoothed down.
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    fitted = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample
    )
    buffer = io.BytesIO()
    fitted.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_report(
    evaluation: dict[str, Any],
    *,
    title: str,
    facts: Sequence[tuple[str, str]] = (),
    thumbnails: dict[str, str] | None = None,
    overlays: dict[str, str] | None = None,
) -> str:
    """The whole report page: facts, metrics, confusion matrix, PR curves, thresholds, labels, mistakes, and
    where the model looked (``overlays``: heatmap data URIs by image URI, described by the evaluation's
    ``explanations``)."""
    sections = [
        f"<h1>{_text(title)}</h1>",
        _table(["", ""], list(facts), css_class="facts") if facts else "",
        "<h2>Metrics</h2>",
        _table(["metric", "value"], summary_rows(evaluation)),
        _formats_section(evaluation),
        '<div class="charts">',
        _confusion_section(evaluation),
        _curves_section(evaluation),
        "</div>",
        "<h2>Score threshold</h2>",
        _threshold_table(evaluation),
        f"<h2>Per label at score threshold {evaluation['scoreThreshold']:.2f}</h2>",
        _table(list(PER_LABEL_COLUMNS), per_label_rows(evaluation)),
        "<h2>Most confident mistakes</h2>",
        _mistakes(evaluation["mostConfidentMistakes"], thumbnails or {}, overlays or {}),
        _explained_correct(evaluation, overlays or {}),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_text(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _text(value: object) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], css_class: str = "", chosen: int = -1) -> str:
    head = "".join(f"<th>{_text(cell)}</th>" for cell in header) if any(header) else ""
    chosen_row = ' class="chosen"'
    lines = [
        f"<tr{chosen_row if i == chosen else ''}>" + "".join(f"<td>{_text(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    ]
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{attribute}>" + (f"<tr>{head}</tr>" if head else "") + "".join(lines) + "</table>"


FORMAT_COLUMNS = ("format", "file", "size (MB)", "latency median (ms)", "latency p90 (ms)", "top-1", "agreement")


def _formats_section(evaluation: dict[str, Any]) -> str:
    """Each exported file's size, single-thread batch-1 latency on this CPU, top-1 and agreement with PyTorch."""
    formats = evaluation.get("formats")
    if not formats:
        return ""
    rows = []
    for entry in formats:
        latency = entry["latencyMs"]
        measured = (
            (f"{latency['median']:.2f}", f"{latency['p90']:.2f}") if latency else ("not run here", "not run here")
        )
        rows.append(
            (
                entry["format"],
                entry["file"],
                f"{entry['bytes'] / 1e6:.2f}",
                *measured,
                format_metric(entry["top1"]),
                format_metric(entry["top1Agreement"]),
            )
        )
    runs = max((entry["latencyMs"]["runs"] for entry in formats if entry["latencyMs"]), default=0)
    return (
        '<h2>Exported formats</h2><div id="formats">'
        + _table(FORMAT_COLUMNS, rows)
        + f'<p class="muted">Each file run by its own runtime on the test split. Latency: one image, one CPU thread '
        f"of the machine that trained it, {runs} timed runs. Agreement: share of test images whose top-1 label is "
        "the PyTorch model's. Core ML predicts only on macOS: its predictions are not checked.</p></div>"
    )


def _threshold_table(evaluation: dict[str, Any]) -> str:
    sweep = evaluation["thresholdSweep"]
    columns = ("threshold", "precision", "recall", "F1", "precision@1", "recall@1")
    keys = ("precision", "recall", "f1", "precisionAt1", "recallAt1")
    rows = [[f"{point['threshold']:.2f}", *(format_metric(point[key]) for key in keys)] for point in sweep]
    distances = [abs(point["threshold"] - evaluation["scoreThreshold"]) for point in sweep]
    return _table(columns, rows, chosen=distances.index(min(distances)))


def _heat_colour(fraction: float) -> str:
    channels = (round(low + (high - low) * fraction) for low, high in zip(HEATMAP_LOW, HEATMAP_HIGH, strict=True))
    return "#" + "".join(f"{channel:02x}" for channel in channels)


def _confusion_section(evaluation: dict[str, Any]) -> str:
    confusion = evaluation["confusionMatrix"]
    if confusion is None:
        return ""
    return (
        "<div><h2>Confusion matrix</h2>"
        + confusion_svg(confusion["labels"], confusion["matrix"])
        + ('<p class="muted">Rows: true label. Columns: predicted label. Colour: share of the row.</p></div>')
    )


def confusion_svg(labels: list[str], matrix: list[list[int]]) -> str:
    """A heatmap of the confusion matrix, cells coloured by their share of the true label's images."""
    cell = max(16, min(44, 440 // max(1, len(labels))))
    left, top = 90, 90
    size = cell * len(labels)
    parts = [
        f'<svg id="confusion-matrix" xmlns="http://www.w3.org/2000/svg" width="{left + size + top}" '
        f'height="{top + size + 30}" font-size="11" role="img" aria-label="confusion matrix">'
    ]
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        total = sum(row)
        y = top + i * cell
        parts.append(_svg_label(left - 6, y + cell / 2, label, anchor="end"))
        parts.append(_svg_label(left + i * cell + cell / 2, top - 6, label, anchor="start", rotate=True))
        for j, count in enumerate(row):
            fraction = count / total if total else 0.0
            x = left + j * cell
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_heat_colour(fraction)}" '
                f'stroke="#fff"><title>{_text(label)} as {_text(labels[j])}: {count}</title></rect>'
            )
            if count and cell >= 22:
                colour = "#fff" if fraction > 0.5 else "#1b1b1b"
                parts.append(
                    f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                    f'fill="{colour}">{count}</text>'
                )
    parts.append(f'<text x="{left + size / 2}" y="{top + size + 22}" text-anchor="middle">predicted</text></svg>')
    return "".join(parts)


def _svg_label(x: float, y: float, text: str, anchor: str, rotate: bool = False) -> str:
    transform = f' transform="rotate(-45 {x} {y})"' if rotate else ""
    return f'<text x="{x}" y="{y + 4}" text-anchor="{anchor}"{transform}>{_text(text)}</text>'


def _curves_section(evaluation: dict[str, Any]) -> str:
    curves = evaluation["precisionRecallCurves"]
    at = evaluation["atThreshold"]
    operating_point = (at["micro"]["recall"], at["micro"]["precision"])
    return (
        "<div><h2>Precision-recall curves</h2>"
        + pr_curves_svg(curves["micro"], curves["perLabel"], operating_point)
        + f'<p class="muted">Red: all labels pooled (micro), average precision '
        f"{format_metric(evaluation['averagePrecision']['micro'])}. Dot: the score threshold "
        f"{evaluation['scoreThreshold']:.2f}.</p></div>"
    )


def pr_curves_svg(
    micro: dict[str, list[float]] | None,
    per_label: dict[str, dict[str, list[float]] | None],
    operating_point: tuple[float, float],
) -> str:
    """Precision against recall: the micro average bold, each label thin, the threshold as a dot."""
    left, top, width, height = 50, 10, 360, 300
    legend = list(per_label)[:MAX_LEGEND_LABELS]

    def point(recall: float, precision: float) -> str:
        return f"{left + recall * width:.1f},{top + (1 - precision) * height:.1f}"

    def polyline(curve: dict[str, list[float]], colour: str, stroke: float, css_id: str) -> str:
        points = " ".join(point(r, p) for r, p in zip(curve["recall"], curve["precision"], strict=True))
        return (
            f'<polyline id="{css_id}" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="{stroke}" stroke-linejoin="round"/>'
        )

    parts = [
        f'<svg id="pr-curves" xmlns="http://www.w3.org/2000/svg" width="{left + width + 160}" '
        f'height="{top + height + 45}" font-size="11" role="img" aria-label="precision-recall curves">',
        *_axes(left, top, width, height),
    ]
    for index, curve in enumerate(per_label.values()):
        if curve is not None:
            parts.append(polyline(curve, PALETTE[index % len(PALETTE)], 1.5, f"pr-label-{index}"))
    if micro is not None:
        parts.append(polyline(micro, MICRO_COLOUR, 3.5, "pr-micro"))
    x, y = point(*operating_point).split(",")
    parts.append(f'<circle cx="{x}" cy="{y}" r="5" fill="{MICRO_COLOUR}" stroke="#fff" stroke-width="1.5"/>')
    for index, label in enumerate(legend):
        y_legend = top + 14 * index + 6
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{left + width + 16}" y="{y_legend - 5}" width="12" height="4" fill="{colour}"/>'
            f'<text x="{left + width + 34}" y="{y_legend}">{_text(label)}</text>'
        )
    if len(per_label) > len(legend):
        parts.append(f'<text x="{left + width + 16}" y="{top + 14 * len(legend) + 6}">and more</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axes(left: int, top: int, width: int, height: int) -> list[str]:
    parts = []
    for tick in range(6):
        value = tick / 5
        x = left + value * width
        y = top + (1 - value) * height
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#e3e6ea"/>')
        parts.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{top + height}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{value:.1f}</text>')
        parts.append(f'<text x="{x}" y="{top + height + 14}" text-anchor="middle">{value:.1f}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#888"/>')
    parts.append(f'<text x="{left + width / 2}" y="{top + height + 34}" text-anchor="middle">recall</text>')
    parts.append(
        f'<text x="12" y="{top + height / 2}" text-anchor="middle" transform="rotate(-90 12 {top + height / 2})">'
        "precision</text>"
    )
    return parts


def _heatmap(overlays: dict[str, str], uri: str, label: str) -> str:
    overlay = overlays.get(uri)
    if overlay is None:
        return ""
    return f'<img class="heatmap" src="{overlay}" alt="where the model looked for {_text(label)}">'


def _mistakes(mistakes: list[dict[str, Any]], thumbnails: dict[str, str], overlays: dict[str, str]) -> str:
    if not mistakes:
        return '<p class="muted">No mistakes on the test split.</p>'
    cards = []
    for mistake in mistakes:
        source = thumbnails.get(mistake["uri"])
        image = (
            f'<img src="{source}" alt="{_text(mistake["uri"])}">' if source else '<div class="muted">no preview</div>'
        )
        image += _heatmap(overlays, mistake["uri"], mistake["predictedLabel"])
        cards.append(
            f'<div class="mistake">{image}<div>true: <b>{_text(", ".join(mistake["trueLabels"]))}</b></div>'
            f"<div>predicted: <b>{_text(mistake['predictedLabel'])}</b> ({mistake['score']:.3f})</div>"
            f'<div class="uri">{_text(mistake["uri"])}</div></div>'
        )
    return '<div class="mistakes">' + "".join(cards) + "</div>"


def _explained_correct(evaluation: dict[str, Any], overlays: dict[str, str]) -> str:
    """The section on correct images: their heatmaps per label, and how the heatmaps were made."""
    explanations = evaluation.get("explanations")
    if not explanations:
        return ""
    settings = ", ".join(f"{key} {value}" for key, value in explanations["settings"].items() if key != "method")
    cards = [
        f'<div class="mistake">{_heatmap(overlays, image["uri"], image["label"])}'
        f"<div>label: <b>{_text(image['label'])}</b> ({image['score']:.3f})</div>"
        f'<div class="uri">{_text(image["uri"])}</div></div>'
        for image in explanations["images"]
        if image["kind"] == "correct"
    ]
    return (
        "<h2>Where the model looked</h2>"
        f'<p class="muted">Heatmaps ({_text(explanations["method"])}, {_text(settings)}) of the label the model '
        "gave: above on the mistakes, here on its most confident correct images of each label. Yellow: the "
        "pixels its score rests on most.</p>" + '<div class="mistakes">' + "".join(cards) + "</div>"
    )
