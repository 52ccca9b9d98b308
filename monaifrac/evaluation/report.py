"""One self-contained HTML page from a score folder: where a model is good and where it fails.

The page needs no server and no network: thumbnails are embedded as base64 JPEG, the ROC
curve and the Dice histogram are inline SVG (a few lines each, no plotting library to add to
the project, and crisp at any zoom), and the filters are a few lines of inline JavaScript.

Layout: the metric table with 95 % intervals, the figures per body part, the ROC curve and
the histogram of per-film Dice; then one card per film, worst first (missed fractures, false
alarms, hits by increasing Dice, then true negatives), each showing the film with the truth
(green), the prediction (magenta) and their overlap (yellow), plus a zoom on the fracture.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from monaifrac.data.cases import DataError
from monaifrac.data.fracatlas import BODY_PARTS
from monaifrac.evaluation.score import OUTCOMES, prediction_masks, read_score_dir
from monaifrac.evaluation.truth import load_truth
from monaifrac.io import InputError, read_label_map, write_text
from monaifrac.visualize import to_display_uint8

TRUTH_RGB, PRED_RGB, BOTH_RGB = (40, 220, 60), (255, 40, 255), (255, 230, 0)
THUMB_PX, ZOOM_PX = 240, 160
OUTCOME_LABEL = {"miss": "missed fracture", "false_alarm": "false alarm", "hit": "hit",
                 "true_negative": "true negative"}


def outcome_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, size: int) -> np.ndarray:
    """The film at ``size`` px on its long side, truth green, prediction magenta, overlap yellow.

    Args:
        image: (H, W) grey film; truth, pred: (H, W) boolean fracture masks.

    Masks are shrunk with a box filter and kept wherever any of their pixels fell, so a
    fracture of a few pixels stays visible on a small thumbnail.

    Returns:
        (h, w, 3) uint8.
    """
    from PIL import Image

    h, w = image.shape
    scale = min(1.0, size / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    grey = np.asarray(Image.fromarray(to_display_uint8(image)).resize((tw, th), Image.BILINEAR), dtype=np.float32)

    def shrink(mask: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((tw, th), Image.BOX)) > 0

    t, p = shrink(truth), shrink(pred)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for mask, colour in ((t & ~p, TRUTH_RGB), (p & ~t, PRED_RGB), (t & p, BOTH_RGB)):
        rgb[mask] = 0.35 * rgb[mask] + 0.65 * np.asarray(colour, dtype=np.float32)
    return rgb.astype(np.uint8)


def zoom_box(truth: np.ndarray, pred: np.ndarray, margin: float = 0.75, min_side: int = 64):
    """(top, bottom, left, right) of a square around every truth and predicted fracture pixel,
    widened by ``margin`` of its side; None when both masks are empty."""
    ys, xs = np.nonzero(truth | pred)
    if ys.size == 0:
        return None
    h, w = truth.shape
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * (1 + margin)
    side = int(min(max(side, min_side), h, w))
    top = int(min(max(cy - side / 2, 0), h - side))
    left = int(min(max(cx - side / 2, 0), w - side))
    return top, top + side, left, left + side


def _jpeg_data_uri(rgb: np.ndarray, quality: int = 82) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _num(value, digits: int = 3) -> str:
    if value in (None, ""):
        return "–"
    value = float(value)
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _ci(entry) -> str:
    if not isinstance(entry, dict):
        return _num(entry)
    low, high = (entry.get("ci95") or [None, None])
    interval = f" <span class=ci>[{_num(low)}, {_num(high)}]</span>" if low is not None else ""
    return f"{_num(entry.get('value'))}{interval}"


def roc_svg(curve: dict | None, point: tuple[float, float] | None, size: int = 260) -> str:
    """The ROC curve as inline SVG (false-positive rate across, true-positive rate up)."""
    pad = 34
    inner = size - 2 * pad

    def xy(fpr: float, tpr: float) -> str:
        return f"{pad + fpr * inner:.1f},{pad + (1 - tpr) * inner:.1f}"

    parts = [f'<svg class=chart viewBox="0 0 {size} {size}" width={size} height={size} role=img '
             f'aria-label="ROC curve"><rect x={pad} y={pad} width={inner} height={inner} class=frame />',
             f'<line x1={pad} y1={pad + inner} x2={pad + inner} y2={pad} class=chance />']
    for v in (0, 0.5, 1):
        parts.append(f'<text x={pad + v * inner:.0f} y={size - 14} class=tick>{v:g}</text>'
                     f'<text x={pad - 6} y={pad + (1 - v) * inner + 4:.0f} class="tick end">{v:g}</text>')
    parts.append(f'<text x={size / 2:.0f} y={size - 2} class=axis>false-positive rate</text>'
                 f'<text x=10 y={size / 2:.0f} class=axis transform="rotate(-90 10 {size / 2:.0f})">sensitivity</text>')
    if curve:
        points = " ".join(xy(f, t) for f, t in zip(curve["fpr"], curve["tpr"]))
        parts.append(f'<polyline points="{points}" class=roc />')
    else:
        parts.append(f'<text x={size / 2:.0f} y={size / 2:.0f} class=axis>no fracture_score</text>')
    if point is not None and not any(v is None or math.isnan(v) for v in point):
        x, y = xy(*point).split(",")
        parts.append(f'<circle cx={x} cy={y} r=4 class=op><title>operating point</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(values: list[float], bins: int = 10, width: int = 300, height: int = 260) -> str:
    """Histogram of per-film Dice in [0, 1] as inline SVG."""
    pad = 34
    counts, _ = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0, 1)) if values else (np.zeros(bins), None)
    top = max(int(counts.max()), 1)
    bw = (width - 2 * pad) / bins
    ih = height - 2 * pad
    parts = [f'<svg class=chart viewBox="0 0 {width} {height}" width={width} height={height} role=img '
             f'aria-label="Dice histogram"><rect x={pad} y={pad} width={width - 2 * pad} height={ih} class=frame />']
    for i, c in enumerate(counts):
        bh = ih * c / top
        parts.append(f'<rect x={pad + i * bw + 1:.1f} y={pad + ih - bh:.1f} width={bw - 2:.1f} height={bh:.1f} '
                     f'class=bar><title>{i / bins:.1f}–{(i + 1) / bins:.1f}: {int(c)} film(s)</title></rect>')
    for v in (0, 0.5, 1):
        parts.append(f'<text x={pad + v * (width - 2 * pad):.0f} y={height - 14} class=tick>{v:g}</text>')
    parts.append(f'<text x={pad - 6} y={pad + 4} class="tick end">{top}</text>'
                 f'<text x={width / 2:.0f} y={height - 2} class=axis>Dice per fractured film</text></svg>')
    return "".join(parts)


def order_rows(rows: list[dict]) -> list[dict]:
    """Worst first: misses (largest fracture first), false alarms (highest score or area first),
    hits (lowest Dice first), true negatives."""

    def key(r: dict):
        rank = OUTCOMES.index(r["outcome"])
        score = float(r["fracture_score"]) if r.get("fracture_score") not in (None, "") else float(r["pred_px"])
        within = {"miss": -float(r["truth_px"]), "false_alarm": -score, "hit": float(r["dice"]),
                  "true_negative": -score}[r["outcome"]]
        return rank, within, r["film"]

    return sorted(rows, key=key)


def _metric_table(result: dict) -> str:
    f, p = result.get("fracture", {}), result.get("presence", {})
    hit, missed = f.get("dice_hit", {}), f.get("missed", {})
    rows = [
        ("dice_pos (Dice per fractured film, mean)", _ci(f.get("dice_pos")), f"{f.get('dice_pos', {}).get('n', 0)} films"),
        ("Dice per fractured film found (the label map overlaps its fracture), mean", _num(hit.get("value")),
         f"{hit.get('n', 0)} films"),
        ("fractured films missed (no overlap with the fracture)", str(missed.get("n", "–")),
         f"{missed.get('no_fracture_pixel', '–')} with no fracture pixel, "
         f"{missed.get('called_fractured', '–')} still called fractured"),
        ("Dice, pooled over all films", _num(f.get("dice")), ""),
        ("IoU, pooled", _num(f.get("iou")), ""),
        ("Dice per film, mean (empty/empty = 1)", _num(f.get("dice_mean")), ""),
        ("pixel precision / recall, pooled", f"{_num(f.get('precision'))} / {_num(f.get('recall'))}", ""),
        ("HD95 px, mean / median (miss or false alarm: film diagonal)",
         f"{_num(f.get('hd95_mean'), 1)} / {_num(f.get('hd95_median'), 1)}", ""),
        ("presence ROC-AUC", _ci(p.get("roc_auc")) if "roc_auc" in p else "– (no fracture_score)", ""),
        ("sensitivity / specificity / PPV", f"{_num(p.get('sensitivity'))} / {_num(p.get('specificity'))} / "
                                            f"{_num(p.get('ppv'))}",
         f"tp {p.get('tp', 0)}, fp {p.get('fp', 0)}, tn {p.get('tn', 0)}, fn {p.get('fn', 0)}"),
    ]
    bone = result.get("bone_pseudo_label_agreement")
    if bone:
        rows.append(("bone: agreement with the Li pseudo-label (Dice pooled / per film)",
                     f"{_num(bone.get('dice'))} / {_num(bone.get('dice_mean'))}", "not expert outlines"))
    body = "".join(f"<tr><th>{html.escape(a)}</th><td>{b}</td><td class=note>{html.escape(c)}</td></tr>"
                   for a, b, c in rows)
    return f"<table class=metrics>{body}</table>"


def _part_table(result: dict) -> str:
    parts = result.get("by_body_part", {})
    if not parts:
        return ""
    head = ("<tr><th>body part</th><th>films</th><th>fractured</th><th>dice_pos [95 % CI]</th><th>Dice pooled</th>"
            "<th>ROC-AUC</th><th>sensitivity</th><th>specificity</th></tr>")
    body = ""
    for name, g in parts.items():
        f, p = g["fracture"], g["presence"]
        auc = _ci(p["roc_auc"]) if "roc_auc" in p else "–"
        body += (f"<tr><th>{html.escape(name)}</th><td>{g['films']}</td><td>{g['fractured']}</td>"
                 f"<td>{_ci(f['dice_pos'])}</td><td>{_num(f['dice'])}</td><td>{auc}</td>"
                 f"<td>{_num(p.get('sensitivity'))}</td><td>{_num(p.get('specificity'))}</td></tr>")
    return f"<table class=parts>{head}{body}</table>"


def _card(row: dict, image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> str:
    thumb = _jpeg_data_uri(outcome_overlay(image, truth, pred, THUMB_PX))
    box = zoom_box(truth, pred)
    zoom = ""
    if box is not None:
        t, b, l, r = box
        zoom = (f'<img class=zoom alt="zoom on the fracture" src="'
                f'{_jpeg_data_uri(outcome_overlay(image[t:b, l:r], truth[t:b, l:r], pred[t:b, l:r], ZOOM_PX))}">')
    parts = row["body_part"].split("+")
    score = _num(row.get("fracture_score"))
    return (f'<div class="card {row["outcome"]}" data-outcome={row["outcome"]} '
            f'data-parts="{html.escape(" ".join(parts))}">'
            f'<div class=imgs><img class=thumb alt="{html.escape(row["film"])}" src="{thumb}">{zoom}</div>'
            f'<div class=cap><b>{html.escape(row["film"])}</b> <span class="tag {row["outcome"]}">'
            f'{OUTCOME_LABEL[row["outcome"]]}</span><br>{html.escape(row["body_part"])} · Dice {_num(row["dice"])}'
            f' · HD95 {_num(row["hd95"], 1)} px · score {score}</div></div>')


CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:20px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 8px} .sub{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0} th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
td{font-variant-numeric:tabular-nums} .ci,.note{color:#777;font-size:12px}
.charts{display:flex;gap:24px;flex-wrap:wrap} .chart{background:#fff;border:1px solid #ddd}
.frame{fill:none;stroke:#bbb} .chance{stroke:#ccc;stroke-dasharray:4} .roc{fill:none;stroke:#d02090;stroke-width:2}
.op{fill:#222} .bar{fill:#4a7fd0} .tick{font-size:10px;text-anchor:middle;fill:#555} .tick.end{text-anchor:end}
.axis{font-size:11px;text-anchor:middle;fill:#333}
.filters{position:sticky;top:0;background:#fafafa;padding:8px 0;border-bottom:1px solid #ddd;z-index:1}
.filters label{margin-right:12px} #count{color:#666}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px;width:420px}
.card.miss{border-left:5px solid #c00} .card.false_alarm{border-left:5px solid #e08000}
.card.hit{border-left:5px solid #2a2} .card.true_negative{border-left:5px solid #999}
.imgs{display:flex;gap:6px;align-items:flex-start} .thumb{max-width:240px} .zoom{width:160px;height:160px}
.cap{font-size:12px;margin-top:4px} .tag{padding:0 5px;border-radius:3px;color:#fff;font-size:11px}
.tag.miss{background:#c00} .tag.false_alarm{background:#e08000} .tag.hit{background:#2a2}
.tag.true_negative{background:#999} .legend span{display:inline-block;width:12px;height:12px;vertical-align:middle}
"""

SCRIPT = """
function applyFilters(){
  var part=document.getElementById('part').value, shown=0, cards=document.querySelectorAll('.card');
  var want={};document.querySelectorAll('input[name=outcome]').forEach(function(c){want[c.value]=c.checked;});
  cards.forEach(function(card){
    var ok=want[card.dataset.outcome]&&(part==='all'||card.dataset.parts.split(' ').indexOf(part)>=0);
    card.hidden=!ok; if(ok){shown++;}
  });
  document.getElementById('count').textContent=shown+' of '+cards.length+' films shown';
}
// a filter can be preset in the address, e.g. report.html#part=hand&outcome=miss,false_alarm
function readHash(){
  var args={};location.hash.replace(/^#/,'').split('&').forEach(function(kv){var p=kv.split('=');if(p[0]){args[p[0]]=decodeURIComponent(p[1]||'');}});
  if(args.part){document.getElementById('part').value=args.part;}
  if(args.outcome){var keep=args.outcome.split(',');
    document.querySelectorAll('input[name=outcome]').forEach(function(c){c.checked=keep.indexOf(c.value)>=0;});}
}
document.querySelectorAll('#part, input[name=outcome]').forEach(function(e){e.addEventListener('change',applyFilters);});
window.addEventListener('hashchange',function(){readHash();applyFilters();});
readHash();applyFilters();
"""


def write_report(score_dir: str | Path, out: str | Path, max_films: int | None = None) -> Path:
    """Write the HTML report of a score folder.

    Args:
        score_dir: a folder written by ``monaifrac score`` (``metrics.json``, ``per_film.csv``);
            the films and predictions are read again from the paths it records.
        out: the HTML file (written atomically).
        max_films: keep only the first (worst) films' cards; all by default.

    Returns:
        the path written.
    """
    result, rows = read_score_dir(score_dir)
    kind = result["inputs"]["pred_kind"]
    truth = {f.id: f for f in load_truth(result["inputs"]["truth"])}
    ordered = order_rows(rows)[: max_films if max_films else None]
    cards = []
    for row in ordered:
        film = truth.get(row["film"])
        if film is None:
            raise DataError(f"{result['inputs']['truth']}: film {row['film']} of the score is no longer there")
        image, label = film.load()
        pred = read_label_map(row["prediction"])
        if pred.shape != label.shape:
            raise InputError(row["prediction"], f"prediction {pred.shape} and film {label.shape} differ in shape")
        cards.append(_card(row, image, label == 2, prediction_masks(pred, kind, Path(row["prediction"]))[0]))

    presence = result.get("presence", {})
    point = None
    if presence.get("sensitivity") is not None and presence.get("specificity") is not None:
        point = (1 - presence["specificity"], presence["sensitivity"])
    dice_values = [float(r["dice"]) for r in rows if r["truth_fractured"] == "1"]
    counts = result.get("outcomes", {})
    parts = [p for p in BODY_PARTS if p in result.get("by_body_part", {})]
    inputs = result["inputs"]
    page = f"""<!DOCTYPE html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<title>monaifrac report: {html.escape(Path(inputs['predictions']).name)}</title><style>{CSS}</style></head><body>
<h1>Fracture segmentation report</h1>
<div class=sub>predictions {html.escape(inputs['predictions'])} · truth {html.escape(inputs['truth'])}
{('· split ' + html.escape(inputs['split'])) if inputs.get('split') else ''} · {result['films']} films
({result['fractured']} fractured, {result['normal']} normal) · presence call: {html.escape(inputs['presence_call'])}
· 95 % intervals: bootstrap over films ({inputs['bootstrap']['resamples']} resamples, seed {inputs['bootstrap']['seed']})</div>
<h2>Figures</h2>{_metric_table(result)}
<h2>Per body part</h2>{_part_table(result) or '<p class=sub>no body part known</p>'}
<div class=charts><div><h2>Presence ROC</h2>{roc_svg(presence.get('roc_curve'), point)}</div>
<div><h2>Dice of fractured films</h2>{histogram_svg(dice_values)}</div></div>
<h2>Films, worst first</h2>
<div class=legend><span style="background:rgb{TRUTH_RGB}"></span> truth
<span style="background:rgb{PRED_RGB}"></span> prediction <span style="background:rgb{BOTH_RGB}"></span> overlap</div>
<div class=filters>body part <select id=part><option value=all>all</option>
{''.join(f'<option value={p}>{p}</option>' for p in parts)}</select>
{''.join(f'<label><input type=checkbox name=outcome value={o} checked> {OUTCOME_LABEL[o]} ({counts.get(o, 0)})</label>'
         for o in OUTCOMES)}
<span id=count></span></div>
<div class=cards>{''.join(cards)}</div>
<script>{SCRIPT}</script></body></html>
"""
    out = Path(out)
    write_text(out, page)
    return out
