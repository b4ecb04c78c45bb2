"""report.html: one self-contained page (no network): the summary table with intervals, bar charts of the
metrics, each run's training and validation loss curves, general-ability retention, and every question side by
side with filters. Charts are SVG drawn here; the question view is built by a small script from embedded JSON,
through text nodes only, so nothing in a question or answer can run as markup."""

from __future__ import annotations

import html
import json
from pathlib import Path

from annotune.dataset.files import read_jsonl, write_atomically

LABELS = {"key_accuracy": "key accuracy", "exact_match": "exact match", "token_f1": "token F1",
          "rouge_l": "ROUGE-L"}
COLOURS = ["#8a94a6", "#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626"]


def write_report(path: Path, report: dict, questions, results, runs: list[str], run_dirs: dict[str, str]) -> None:
    names = list(results)
    body = [f"<h1>Evaluation on {_e(Path(report['data']).name)}</h1>",
            f"<p class=meta>{report['questions']} held-out questions, {len(names)} models, "
            f"{report['seconds']:.0f} s. Greedy answers up to {report['generation']['max_new_tokens']} tokens "
            "unless set otherwise. Intervals are bootstrap 95%; p is a paired permutation test against the "
            "baseline.</p>",
            _summary_table(report, names), _charts(report, names), _retention(report),
            _loss_curves(runs, run_dirs), _questions_section()]
    data = {"names": names, "questions": [
        {"id": q.id, "question": q.text, "reference": q.reference, "keys": q.keys,
         "answers": {n: results[n].answers[i] for n in names}} for i, q in enumerate(questions)],
        "roles": {n: results[n].role for n in names}}
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>annotune evaluation</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>"
            + "".join(body)
            + f"<script type=application/json id=data>{_json_for_script(data)}</script><script>{SCRIPT}</script>"
            "</body></html>")
    write_atomically(path, [page])


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _json_for_script(value) -> str:
    # Inside <script> only "</" can end the element early; escaping "<" keeps any text inert.
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def p_text(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _summary_table(report: dict, names: list[str]) -> str:
    models = report["models"]
    metrics = [m for m in LABELS if any(m in models[n] for n in names)]
    head = "".join(f"<th>{LABELS[m]}</th>" for m in metrics)
    rows = []
    for name in names:
        entry = models[name]
        cells = []
        for metric in metrics:
            value = entry.get(metric)
            if value is None:
                cells.append("<td>–</td>")
                continue
            low, high = value["ci95"]
            paired = entry.get("paired", {}).get(metric)
            note = (f"<br><small>{paired['difference'] * 100:+.1f} pts, {p_text(paired['p_value'])}</small>"
                    if paired else "")
            cells.append(f"<td><b>{_pct(value['mean'])}</b> <small>[{_pct(low)}, {_pct(high)}]</small>{note}</td>")
        ppl = entry.get("reference_perplexity")
        rows.append(f"<tr><th>{_e(name)}<br><small>{_e(entry['role'])}</small></th>{''.join(cells)}"
                    f"<td>{entry['answer_words']:.1f}</td><td>{_pct(entry['stopped_on_own'])}</td>"
                    f"<td>{'–' if ppl is None else f'{ppl:.2f}'}</td></tr>")
    return (f"<h2>Summary</h2><table class=summary><tr><th>model</th>{head}<th>words per answer</th>"
            f"<th>stopped on its own</th><th>reference perplexity</th></tr>{''.join(rows)}</table>")


def _charts(report: dict, names: list[str]) -> str:
    models = report["models"]
    metrics = [m for m in LABELS if any(m in models[n] for n in names)]
    width, bar, gap = 640, 18, 34
    height = len(metrics) * (len(names) * bar + gap) + 10
    parts, y = [], 10
    for metric in metrics:
        parts.append(f"<text x=0 y={y + 12} class=label>{LABELS[metric]}</text>")
        for k, name in enumerate(names):
            value = models[name].get(metric, {}).get("mean") or 0.0
            low, high = models[name].get(metric, {}).get("ci95", [value, value])
            x0, span = 110, width - 300
            parts.append(f"<rect x={x0} y={y} width={span * value:.1f} height={bar - 4} fill={COLOURS[k % 6]}>"
                         f"<title>{_e(name)}: {_pct(value)}</title></rect>")
            parts.append(f"<line x1={x0 + span * low:.1f} x2={x0 + span * high:.1f} y1={y + bar / 2 - 2} "
                         f"y2={y + bar / 2 - 2} class=ci />")
            parts.append(f"<text x={x0 + span + 8} y={y + 11} class=value>{_e(name)} {_pct(value)}</text>")
            y += bar
        y += gap - bar + 8
    return (f"<h2>Metrics</h2><svg class=chart viewBox='0 0 {width} {height}' role=img "
            f"aria-label='bar chart of the metrics per model'>{''.join(parts)}</svg>")


def _retention(report: dict) -> str:
    rows = []
    for name, entry in report["models"].items():
        kept = entry.get("retention")
        if kept is None:
            continue
        rows.append(f"<li><b>{_e(name)}</b> kept {kept['kept']} of the {kept['of']} general questions "
                    f"{_e(entry['against'])} answered right ({_pct(kept['share'])})"
                    + (f"; lost: {_e(', '.join(kept['lost']))}" if kept["lost"] else "") + "</li>")
    if not rows:
        return ""
    return ("<h2>General ability kept</h2><p>Everyday questions answered by each model (annotune's general-"
            "knowledge probe); a fine-tune should keep what its baseline knew.</p><ul>" + "".join(rows) + "</ul>")


def _loss_curves(runs: list[str], run_dirs: dict[str, str]) -> str:
    charts = []
    for name in runs:
        file = Path(run_dirs[name]) / "metrics.jsonl"
        if not file.is_file():
            continue
        rows = read_jsonl(file)
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if train:
            charts.append(f"<figure><figcaption>{_e(name)}</figcaption>{_curve_svg(train, val)}</figure>")
    if not charts:
        return ""
    return "<h2>Training</h2><p>Loss per optimizer step (training, blue; validation, orange).</p>" + "".join(charts)


def _curve_svg(train: list[tuple[float, float]], val: list[tuple[float, float]]) -> str:
    width, height, pad = 520, 200, 36
    points = train + val
    max_x = max(x for x, _ in points) or 1
    top, bottom = max(y for _, y in points), min(y for _, y in points)
    span = (top - bottom) or 1

    def path(series):
        return " ".join(f"{pad + (width - 2 * pad) * x / max_x:.1f},{pad + (height - 2 * pad) * (top - y) / span:.1f}"
                        for x, y in series)

    lines = [f"<polyline points='{path(train)}' class=train />"]
    if val:
        lines.append(f"<polyline points='{path(val)}' class=val />")
    axis = (f"<text x=2 y={pad} class=label>{top:.2f}</text><text x=2 y={height - pad} class=label>{bottom:.2f}"
            f"</text><text x={width - pad} y={height - 8} class=label>step {max_x:g}</text>")
    return f"<svg class=curve viewBox='0 0 {width} {height}' role=img aria-label='loss curve'>{axis}{''.join(lines)}</svg>"


def _questions_section() -> str:
    return ("<h2>Every question</h2><div class=filters><label><input type=checkbox id=wrong> wrong only (a run "
            "missed it)</label><label><input type=checkbox id=changed> changed between models</label>"
            "<label>search <input type=search id=search placeholder='question, answer or reference'></label>"
            "<span id=count></span></div><div id=questions></div>")


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:72rem;padding:1rem 1.5rem;
color:#1f2937;background:#fafafa}h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.meta,small{color:#6b7280}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #e5e7eb;padding:.4rem .6rem;text-align:left;vertical-align:top}
.chart,.curve{width:100%;max-width:640px;background:#fff;border:1px solid #e5e7eb}.label,.value{font-size:11px;fill:#374151}
.ci{stroke:#111;stroke-width:1.5}.train{fill:none;stroke:#2563eb;stroke-width:1.5}
.val{fill:none;stroke:#d97706;stroke-width:2}figure{margin:1rem 0}
.filters{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:center;margin:.5rem 0 1rem}
.q{background:#fff;border:1px solid #e5e7eb;border-radius:6px;margin:.6rem 0;padding:.6rem .8rem}
.q .text{font-weight:600}.q .ref{color:#374151;margin:.3rem 0}.answers{display:grid;gap:.5rem;
grid-template-columns:repeat(auto-fit,minmax(16rem,1fr))}.answer{border-left:4px solid #d1d5db;padding:.2rem .5rem;
white-space:pre-wrap}.answer.ok{border-color:#16a34a}.answer.bad{border-color:#dc2626}.answer .who{font-size:.8rem;
color:#6b7280;white-space:normal}
"""

SCRIPT = """
(function(){
  var data = JSON.parse(document.getElementById('data').textContent);
  var box = document.getElementById('questions');
  function el(tag, cls, text){var e=document.createElement(tag); if(cls) e.className=cls;
    if(text!==undefined) e.textContent=text; return e;}
  function correct(a){ return 'key_accuracy' in a ? a.key_accuracy === 1 : a.token_f1 >= 0.5; }
  var runs = data.names.filter(function(n){ return data.roles[n] === 'run'; });
  function render(){
    var wrong = document.getElementById('wrong').checked, changed = document.getElementById('changed').checked;
    var term = document.getElementById('search').value.toLowerCase();
    box.textContent = '';
    var shown = 0;
    data.questions.forEach(function(q){
      var oks = data.names.map(function(n){ return correct(q.answers[n]); });
      if (wrong && runs.every(function(n){ return correct(q.answers[n]); })) return;
      if (changed && oks.every(function(v){ return v === oks[0]; })) return;
      var hay = [q.question, q.reference].concat(data.names.map(function(n){ return q.answers[n].text; }))
        .join(' ').toLowerCase();
      if (term && hay.indexOf(term) < 0) return;
      shown++;
      var card = el('div', 'q'); card.dataset.id = q.id;
      card.appendChild(el('div', 'text', q.question));
      card.appendChild(el('div', 'ref', 'Reference: ' + q.reference + (q.keys.length ? '  (keys: ' + q.keys.join(', ') + ')' : '')));
      var grid = el('div', 'answers');
      data.names.forEach(function(n, i){
        var a = q.answers[n], cell = el('div', 'answer ' + (oks[i] ? 'ok' : 'bad'));
        cell.appendChild(el('div', 'who', n + ' · ' + (oks[i] ? 'right' : 'wrong') + ' · F1 ' + a.token_f1.toFixed(2)
          + (a.finish_reason === 'length' ? ' · cut at the token limit' : '')));
        cell.appendChild(document.createTextNode(a.text));
        grid.appendChild(cell);
      });
      card.appendChild(grid); box.appendChild(card);
    });
    document.getElementById('count').textContent = shown + ' of ' + data.questions.length + ' questions';
  }
  ['wrong', 'changed', 'search'].forEach(function(id){ document.getElementById(id).addEventListener('input', render); });
  render();
})();
"""
