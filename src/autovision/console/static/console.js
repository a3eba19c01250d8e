// The AutoVision console: one page, hash routes, the JSON API of autovision.console.app.
// Everything is built with DOM calls (never from HTML strings), every request goes to this origin,
// and every state-changing request carries the CSRF token of the double-submit cookie.
import uPlot from "./vendor/uPlot.esm.js";

const main = document.getElementById("main");
const POLL_MS = 1500;
let timers = [];
let generation = 0;
let options = null;

// --- helpers -----------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)autovision_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// A 401 (in a cluster: no token, or an expired one) sends the caller to the cluster app's login page.
class Unauthorized extends Error {}
// The answer to a page the user has left (a newer route started while it was on its way): dropped, so that a
// slow page never paints over the one on screen.
class Stale extends Error {}

async function api(path, init = {}) {
  const mine = generation;
  const headers = { ...(init.headers || {}) };
  if (init.method && init.method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(path, { ...init, headers, credentials: "same-origin" });
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : null;
  if (mine !== generation) throw new Stale(path);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    if (response.status === 401) throw new Unauthorized(message);
    throw new Error(message);
  }
  return body;
}

const enc = encodeURIComponent;
const datasetPath = (ref) => `/api/datasets/${enc(ref.namespace)}/${enc(ref.name)}`;
const runPath = (ref) => `/api/runs/${enc(ref.namespace)}/${enc(ref.job)}/${enc(ref.uid)}`;
const imageUrl = (ref, version, sha) => `${datasetPath(ref)}/versions/${enc(version)}/images/${sha}`;
const fixed = (value, digits = 3) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

function every(ms, task) {
  const mine = generation;
  const tick = async () => {
    try {
      if ((await task()) === false) return;
    } catch (error) {
      console.warn(error);
    }
    if (mine === generation) timers.push(setTimeout(tick, ms));
  };
  tick();
}

function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

function show(...children) {
  fill(main, ...children);
}

function failure(error) {
  return h("p", { class: "error", role: "alert" }, String(error.message || error));
}

function table(columns, rows, numeric = []) {
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((column, i) => h("th", { class: numeric.includes(i) ? "num" : null }, column)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell, i) => h("td", { class: numeric.includes(i) ? "num" : null }, cell))))),
  );
}

function trialCounts(trials) {
  const parts = [`${trials.done} done`, `${trials.running} running`, `${trials.pruned} pruned`];
  if (trials.stoppedByBudget) parts.push(`${trials.stoppedByBudget} stopped by the budget`);
  return parts.join(", ");
}

function card(title, value) {
  return h("div", { class: "card" }, h("div", { class: "muted" }, title), h("div", { class: "value" }, value));
}

function plot(title, series, data, target, extra = {}) {
  const width = Math.min(560, target.clientWidth || 560);
  return new uPlot({ title, width, height: 300, series, ...extra }, data, target);
}

// --- datasets ------------------------------------------------------------------

async function datasetsPage() {
  const datasets = await api("/api/datasets");
  const rows = datasets.map((d) => [
    d.version ? h("a", { href: `#/datasets/${enc(d.ref.namespace)}/${enc(d.ref.name)}/${enc(d.version)}` }, d.ref.name) : d.ref.name,
    d.ref.namespace,
    d.phase,
    d.kept ?? "–",
    d.labels ?? "–",
    d.version ? d.version.slice(0, 19) : "–",
    d.message,
  ]);
  show(
    h("h1", {}, "Datasets"),
    datasets.length ? table(["name", "namespace", "state", "images", "labels", "version", "message"], rows, [3, 4]) : h("p", { class: "muted" }, "No dataset yet: import one."),
    h("p", {}, h("a", { href: "#/import" }, "Import a dataset")),
  );
}

async function versionPage(namespace, name, version) {
  const ref = { namespace, name };
  const report = await api(`${datasetPath(ref)}/versions/${enc(version)}/report`);
  const splits = ["train", "validation", "test"];
  const labels = Object.keys(report.perLabel);
  const counts = labels.map((label) => {
    const c = report.perLabel[label];
    return [label, ...splits.map((s) => c[s]), splits.reduce((n, s) => n + c[s], 0)];
  });
  const state = { label: null, split: "", filter: "all", offset: 0, limit: 60 };
  const grid = h("div", { class: "grid", id: "grid" });
  const status = h("span", { class: "muted", id: "page-status" });
  const chips = h("div", {});
  const renderChips = () =>
    chips.replaceChildren(
      ...[null, ...labels].map((label) =>
        h("span", { class: `chip${state.label === label ? " on" : ""}`, "data-label": label ?? "", onclick: () => { state.label = label; state.offset = 0; renderChips(); load(); } }, label ?? "all labels"),
      ),
    );
  const load = async () => {
    const query = new URLSearchParams({ filter: state.filter, offset: state.offset, limit: state.limit });
    if (state.label) query.set("label", state.label);
    if (state.split) query.set("split", state.split);
    try {
      const page = await api(`${datasetPath(ref)}/versions/${enc(version)}/images?${query}`);
      status.textContent = page.total ? `${page.offset + 1}–${page.offset + page.tiles.length} of ${page.total}` : "no images";
      prev.disabled = state.offset === 0;
      next.disabled = state.offset + state.limit >= page.total;
      grid.replaceChildren(...page.tiles.map((tile) => imageTile(ref, version, tile)));
    } catch (error) {
      grid.replaceChildren(failure(error));
    }
  };
  const prev = h("button", { class: "plain", id: "previous-page", onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, "‹ previous");
  const next = h("button", { class: "plain", id: "next-page", onclick: () => { state.offset += state.limit; load(); } }, "next ›");
  const filter = h(
    "select",
    { id: "filter", onchange: (e) => { state.filter = e.target.value; state.offset = 0; load(); } },
    [["all", "all images"], ["rejected", "rejected (with reason)"], ["near-duplicates", "near-duplicates"], ["conflicting", "conflicting labels"], ["unassigned", "unassigned"]].map(([value, text]) => h("option", { value }, text)),
  );
  const split = h("select", { id: "split", onchange: (e) => { state.split = e.target.value; state.offset = 0; load(); } }, h("option", { value: "" }, "every split"), [...splits, "unassigned"].map((s) => h("option", { value: s }, s)));
  renderChips();
  show(
    h("h1", {}, `${name} `, h("span", { class: "muted" }, version.slice(0, 19))),
    h("div", { class: "cards" }, card("files", report.total), card("kept", report.kept), card("rejected", report.rejected), card("duplicates", report.duplicates), card("near-duplicates", report.nearDuplicates), card("conflicts", report.conflicts), card("unlabelled", report.unlabelled)),
    report.warnings.map((w) => h("div", { class: "warning" }, h("b", {}, w.reason), `: ${w.message}`)),
    h("h2", {}, "Images per label and split"),
    table(["label", ...splits, "total"], counts, [1, 2, 3, 4]),
    h("h2", {}, "Images"),
    chips,
    h("div", { class: "toolbar" }, filter, split, prev, next, status),
    grid,
  );
  await load();
}

function imageTile(ref, version, tile) {
  const picture = (sha, alt) => h("img", { src: imageUrl(ref, version, sha), alt, loading: "lazy" });
  const media = tile.sha256 === null ? h("div", { class: "muted" }, "not stored") : tile.pair ? h("div", { class: "pair" }, picture(tile.sha256, tile.source), picture(tile.pair, "similar image")) : picture(tile.sha256, tile.source);
  return h(
    "div",
    { class: "tile", title: `${tile.source}\n${tile.note}` },
    media,
    h("div", { class: "caption" }, tile.labels.join(", ") || tile.source),
    h("div", { class: "caption muted" }, tile.note || tile.split),
  );
}

// --- import --------------------------------------------------------------------

function importPage() {
  const message = h("div", { id: "import-message", role: "status" });
  const bar = h("progress", { max: 1, value: 0, hidden: true });
  const form = h(
    "form",
    { class: "stacked", id: "import-form" },
    h("label", { for: "import-name" }, "Dataset name"),
    h("input", { type: "text", id: "import-name", name: "name", required: true, pattern: "[a-z0-9]([-a-z0-9]*[a-z0-9])?", placeholder: "flowers" }),
    h("label", { for: "import-task" }, "Task"),
    h("select", { id: "import-task", name: "task" }, options.tasks.map((task) => h("option", { value: task }, task))),
    h("label", { for: "import-file" }, `Zip of label folders (at most ${(options.maxUploadBytes / 2 ** 20).toFixed(0)} MiB)`),
    h("input", { type: "file", id: "import-file", name: "file", accept: ".zip,application/zip" }),
    h("label", { for: "import-source" }, "…or a path or URI the importer reads (zip, CSV index or folder)"),
    h("input", { type: "text", id: "import-source", name: "source", placeholder: "s3://bucket/flowers.zip" }),
    h("p", {}, h("button", { type: "submit", id: "import-submit" }, "Import")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    if (!data.get("file") || !data.get("file").size) data.delete("file");
    data.set("namespace", "local");
    message.replaceChildren(h("span", { class: "muted" }, "Uploading…"));
    try {
      const answer = await api("/api/datasets", { method: "POST", body: data });
      bar.hidden = false;
      followImport(answer.dataset, message, bar);
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  });
  show(h("h1", {}, "Import a dataset"), form, bar, message);
}

function followImport(ref, message, bar) {
  every(POLL_MS, async () => {
    const state = await api(`${datasetPath(ref)}/import`);
    if (state.phase === "Failed") {
      bar.hidden = true;
      message.replaceChildren(failure(new Error(state.message)));
      return false;
    }
    if (state.phase === "Ready") {
      bar.value = bar.max;
      message.replaceChildren(h("span", { class: "ok" }, "Imported: "), h("a", { href: `#/datasets/${enc(ref.namespace)}/${enc(ref.name)}/${enc(state.version)}` }, `${ref.name} ${state.version.slice(0, 19)}`));
      return false;
    }
    bar.max = state.total || 1;
    bar.value = state.total ? state.completed : 0;
    message.replaceChildren(`${state.stage}${state.total ? `: ${Math.round(state.completed)} of ${Math.round(state.total)}` : ""} ${state.detail}`);
  });
}

// --- training ------------------------------------------------------------------

// The form's choices as the API's TrainingRequest: the optional ones only when given.
function trainingRequest(data, namespace, name) {
  const request = { dataset: { namespace, name }, budgetMilliNodeHours: Number(data.get("budget")), optimizeFor: data.get("optimizeFor"), earlyStopping: data.get("earlyStopping") === "on", seed: Number(data.get("seed")) };
  const backbones = String(data.get("backbones") || "").split(/\s+/).filter(Boolean);
  if (backbones.length) request.backbones = backbones;
  if (data.get("baseModel")) request.baseModel = String(data.get("baseModel")).trim();
  if (data.get("nproc")) request.nproc = Number(data.get("nproc"));
  const formats = data.getAll("exportFormats");
  if (formats.length) request.exportFormats = formats;
  return request;
}

async function runsPage() {
  const [runs, datasets] = await Promise.all([api("/api/runs"), api("/api/datasets")]);
  const rows = runs.map((r) => [
    h("a", { href: `#/runs/${enc(r.ref.namespace)}/${enc(r.ref.job)}/${enc(r.ref.uid)}` }, `${r.ref.job}/${r.ref.uid}`),
    r.phase,
    trialCounts(r.trials),
    r.best ? `${fixed(r.best.value)} (trial ${r.best.trial})` : "–",
    `${r.milliNodeHoursUsed} / ${r.budgetMilliNodeHours ?? "?"}`,
    r.phase === "Succeeded" ? h("a", { href: `#/evaluate/${enc(r.ref.namespace)}/${enc(r.ref.job)}/${enc(r.ref.uid)}` }, "evaluate") : r.message,
  ]);
  const ready = datasets.filter((d) => d.version);
  const message = h("div", { role: "status" });
  const form = h(
    "form",
    { class: "stacked", id: "train-form" },
    h("label", { for: "train-dataset" }, "Dataset (its latest version)"),
    h("select", { id: "train-dataset", name: "dataset" }, ready.map((d) => h("option", { value: `${d.ref.namespace}/${d.ref.name}` }, `${d.ref.namespace}/${d.ref.name}`))),
    h("label", { for: "train-budget" }, "Budget (milli node-hours)"),
    h("input", { type: "number", id: "train-budget", name: "budget", min: 1, value: 1000, required: true }),
    h("label", { for: "train-optimize" }, "Optimize for"),
    h("select", { id: "train-optimize", name: "optimizeFor" }, options.optimizeFor.map((o) => h("option", { value: o }, o))),
    h("label", {}, h("input", { type: "checkbox", name: "earlyStopping", checked: true }), " early stopping"),
    h("label", { for: "train-seed" }, "Seed"),
    h("input", { type: "number", id: "train-seed", name: "seed", min: 0, value: 0 }),
    h("label", { for: "train-backbones" }, "Your backbones (NAME=ARCH@URI, space-separated; optional)"),
    h("input", { type: "text", id: "train-backbones", name: "backbones", placeholder: "mine=resnet18@s3://bucket/weights.pth" }),
    h("label", { for: "train-base" }, "Continue from a finished run (optional; locally a run prefix or URI, in a cluster a TrainingJob's name)"),
    h("input", { type: "text", id: "train-base", name: "baseModel" }),
    h("label", { for: "train-nproc" }, "Processes of the final fit (optional; local only)"),
    h("input", { type: "number", id: "train-nproc", name: "nproc", min: 1 }),
    h("fieldset", {}, h("legend", {}, "Edge formats, written too"),
      ["tflite", "tflite-int8", "coreml", "executorch"].map((f) => h("label", {}, h("input", { type: "checkbox", name: "exportFormats", value: f }), ` ${f}`))),
    h("p", {}, h("button", { type: "submit", id: "train-submit", disabled: !ready.length }, "Start training")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const [namespace, name] = String(data.get("dataset")).split("/");
    try {
      const run = await api("/api/runs", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(trainingRequest(data, namespace, name)),
      });
      location.hash = `#/runs/${enc(run.namespace)}/${enc(run.job)}/${enc(run.uid)}`;
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  });
  show(
    h("h1", {}, "Training"),
    runs.length ? table(["run", "state", "trials", "best so far", "budget used (mNh)", ""], rows) : h("p", { class: "muted" }, "No run yet."),
    h("h2", {}, "Start a run"),
    form,
    message,
  );
}

function runPage(namespace, job, uid) {
  const ref = { namespace, job, uid };
  const header = h("h1", {}, `${job} `, h("span", { class: "muted" }, uid));
  const body = h("div", { id: "run" });
  show(header, body);
  every(POLL_MS * 2, async () => {
    const detail = await api(runPath(ref));
    renderRun(ref, detail, body);
    return !["Succeeded", "Failed"].includes(detail.summary.phase);
  });
}

function renderRun(ref, detail, body) {
  const s = detail.summary;
  const trials = detail.trials;
  const chosen = detail.chosenTrial;
  const front = new Set(detail.paretoFront.map((p) => p.trial));
  const rows = trials.map((t) => [
    `${t.trial}${front.has(t.trial) ? "*" : ""}${t.trial === chosen ? " (chosen)" : ""}`,
    t.architecture ?? "–",
    t.resolution ?? "–",
    `${t.epochsTrained}/${t.epochs ?? "–"}`,
    fixed(t.value, 4),
    fixed(t.latencyMs, 2),
    t.state ?? "–",
  ]);
  const plotTarget = h("div", { id: "front-plot" });
  fill(body,
    h("div", { class: "cards" },
      card("state", s.phase),
      card("trials", trialCounts(s.trials)),
      card("best so far", s.best ? `${fixed(s.best.value, 4)} (trial ${s.best.trial}, ${s.best.architecture ?? "–"})` : "–"),
      card("budget used", `${s.milliNodeHoursUsed} of ${s.budgetMilliNodeHours ?? "?"} mNh`)),
    s.message ? h("p", { class: "error" }, s.message) : null,
    chosen !== null && chosen !== undefined
      ? h("p", { id: "chosen" }, `Chosen: trial ${chosen}, ${detail.architecture?.family ?? ""} — the ${detail.optimizeFor} pick on the accuracy/latency front; the search stopped on ${detail.stopReason}. `, h("a", { href: `#/evaluate/${enc(ref.namespace)}/${enc(ref.job)}/${enc(ref.uid)}` }, "Evaluate"))
      : null,
    h("h2", {}, "Accuracy against latency (* on the Pareto front)"),
    plotTarget,
    h("h2", {}, `Trials (${detail.metric ?? "validation metric"})`),
    table(["trial", "architecture", "resolution", "epochs", "metric", "latency ms", "state"], rows, [2, 4, 5]),
  );
  const measured = trials.filter((t) => t.latencyMs !== null && t.value !== null).sort((a, b) => a.latencyMs - b.latencyMs);
  if (measured.length) {
    plot(
      "",
      [{ label: "latency ms" }, { label: "trial", stroke: "#1a6fd1", paths: () => null, points: { show: true, size: 7 } }, { label: "front", stroke: "#f79009", spanGaps: true, points: { show: true, size: 9 } }],
      [measured.map((t) => t.latencyMs), measured.map((t) => t.value), measured.map((t) => (front.has(t.trial) ? t.value : null))],
      plotTarget,
      { scales: { x: { time: false } } },
    );
  } else {
    plotTarget.append(h("p", { class: "muted" }, "No trial has a measured latency yet."));
  }
}

// --- evaluate ------------------------------------------------------------------

function metricsAt(view, threshold) {
  const n = view.labels.length;
  const tp = new Array(n).fill(0), fp = new Array(n).fill(0), fn = new Array(n).fill(0);
  view.scores.forEach((row, i) => {
    const truth = new Set(view.truth[i]);
    row.forEach((score, j) => {
      const predicted = score >= threshold;
      if (predicted && truth.has(j)) tp[j] += 1;
      else if (predicted) fp[j] += 1;
      else if (truth.has(j)) fn[j] += 1;
    });
  });
  const ratio = (a, b) => (b > 0 ? a / b : 0);
  return view.labels.map((label, j) => ({
    label,
    precision: ratio(tp[j], tp[j] + fp[j]),
    recall: ratio(tp[j], tp[j] + fn[j]),
    f1: ratio(2 * tp[j], 2 * tp[j] + fp[j] + fn[j]),
    support: tp[j] + fn[j],
  }));
}

function curve(points) {
  // sklearn's recall falls as precision rises: uPlot wants x rising, one y per x (the best precision).
  const best = new Map();
  points.recall.forEach((r, i) => best.set(r, Math.max(best.get(r) ?? 0, points.precision[i])));
  const xs = [...best.keys()].sort((a, b) => a - b);
  return [xs, xs.map((x) => best.get(x))];
}

async function evaluatePage(namespace, job, uid) {
  const ref = { namespace, job, uid };
  const view = await api(`${runPath(ref)}/evaluation`);
  const ev = view.evaluation;
  const top1 = view.scores.map((row) => row.indexOf(Math.max(...row)));
  const slider = h("input", { type: "range", id: "threshold", min: 0, max: 1, step: 0.01, value: ev.scoreThreshold });
  const shown = h("output", { id: "threshold-value" }, fixed(ev.scoreThreshold, 2));
  const perLabel = h("div", { id: "per-label" });
  const renderMetrics = () => {
    const threshold = Number(slider.value);
    shown.textContent = fixed(threshold, 2);
    const rows = metricsAt(view, threshold);
    perLabel.replaceChildren(table(["label", "precision", "recall", "F1", "support"], rows.map((r) => [r.label, fixed(r.precision), fixed(r.recall), fixed(r.f1), r.support]), [1, 2, 3, 4]));
  };
  slider.addEventListener("input", renderMetrics);
  const images = h("div", { class: "grid", id: "cell-images" });
  const cellTitle = h("h2", { id: "cell-title" });
  const openCell = (i, j) => {
    const rows = top1.map((p, k) => k).filter((k) => view.truth[k].includes(i) && top1[k] === j);
    cellTitle.textContent = `True ${view.labels[i]}, predicted ${view.labels[j]}: ${rows.length} image(s)`;
    images.replaceChildren(...rows.slice(0, 120).map((k) => testTile(view, k, top1)));
  };
  const matrix = ev.confusionMatrix;
  const max = matrix ? Math.max(1, ...matrix.matrix.flat()) : 1;
  const matrixTable = matrix
    ? h("table", { class: "matrix", id: "confusion" },
        h("tr", {}, h("th", {}, "true \\ predicted"), matrix.labels.map((l) => h("th", {}, l))),
        matrix.matrix.map((row, i) => h("tr", {}, h("th", {}, matrix.labels[i]), row.map((count, j) => {
          const cell = h("td", { class: "cell", "data-row": i, "data-col": j, title: `${matrix.labels[i]} → ${matrix.labels[j]}`, onclick: () => openCell(i, j) }, count);
          const alpha = count / max;
          cell.style.background = `rgba(26, 111, 209, ${alpha.toFixed(3)})`;
          cell.style.color = alpha > 0.5 ? "white" : "";
          return cell;
        }))))
    : h("p", { class: "muted" }, "Multi-label: no confusion matrix.");
  const mistakes = top1.map((p, k) => k).filter((k) => !view.truth[k].includes(top1[k])).sort((a, b) => view.scores[b][top1[b]] - view.scores[a][top1[a]]).slice(0, 24);
  const metrics = view.metrics;
  const curves = h("div", { id: "pr-curves" });
  show(
    h("h1", {}, `Evaluate ${job} `, h("span", { class: "muted" }, uid)),
    h("div", { class: "cards" },
      card("test images", ev.images), card("accuracy (fp32)", fixed(metrics.testAccuracy, 4)), card("accuracy (int8)", fixed(metrics.int8TestAccuracy, 4)),
      card("average precision", fixed(metrics.testAveragePrecision, 4)), card("log loss", fixed(metrics.testLogLoss, 4)), card("latency", `${fixed(metrics.latencyMs, 2)} ms`)),
    h("h2", {}, "Score threshold"),
    h("div", { class: "toolbar" }, slider, shown, h("span", { class: "muted" }, "precision, recall and F1 per label are recomputed here from the saved test predictions")),
    perLabel,
    h("h2", {}, "Precision-recall curves"),
    curves,
    h("h2", {}, "Confusion matrix (click a cell to see its images)"),
    matrixTable,
    cellTitle,
    images,
    h("h2", {}, "Most confident mistakes"),
    h("div", { class: "grid", id: "mistakes" }, mistakes.map((k) => testTile(view, k, top1))),
    h("h2", {}, "Where the model looked"),
    explainedSection(view),
    h("h2", {}, "fp32 against int8"),
    table(["build", "test accuracy", "export parity with the trained model"], [["fp32 ONNX", fixed(metrics.testAccuracy, 4), JSON.stringify(view.parity.onnx ?? "–")], ["int8 ONNX", fixed(metrics.int8TestAccuracy, 4), `${fixed((metrics.int8TestAccuracy - metrics.testAccuracy) * 100, 2)} points of accuracy`]], [1]),
    h("h2", {}, "Exported formats"),
    formatsSection(ev.formats),
  );
  renderMetrics();
  const pr = ev.precisionRecallCurves;
  const named = [["micro average", pr.micro], ...Object.entries(pr.perLabel)].filter(([, c]) => c);
  if (named.length) {
    const palette = ["#1d2733", "#1a6fd1", "#f79009", "#137333", "#b42318", "#7a5af8", "#0e9384", "#c11574", "#667085", "#dc6803"];
    const joined = uPlot.join(named.map(([, c]) => curve(c)));
    plot("", [{ label: "recall" }, ...named.map(([label], i) => ({ label, stroke: palette[i % palette.length], spanGaps: true }))], joined, curves, { scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1.02] } } });
  }
}

// evaluation.json's heatmaps (Grad-CAM or integrated gradients, as the report shows them): each explained image
// under its attribution grid, the stronger the warmer.
function explainedSection(view) {
  const explained = view.evaluation.explanations;
  if (!explained || !explained.images.length) return h("p", { class: "muted" }, "This run has no explanations.");
  return h("div", {},
    h("p", { class: "muted" }, `${explained.method}, ${JSON.stringify(explained.settings)}`),
    h("div", { class: "grid", id: "explained" }, explained.images.map((image, i) => {
      const sha = view.explained[i];
      const side = image.grid.length;
      const heat = h("div", { class: "heat" }, image.grid.flat().map((value) => {
        const cell = h("div");
        cell.style.background = `rgba(220, 38, 38, ${(0.6 * value).toFixed(3)})`;
        return cell;
      }));
      heat.style.gridTemplateColumns = `repeat(${side}, 1fr)`;
      return h("div", { class: "tile", title: `${image.kind}: ${image.label} ${fixed(image.score, 2)}` },
        h("div", { class: "overlay" },
          sha ? h("img", { src: imageUrl(view.dataset, view.version, sha), alt: image.label, loading: "lazy" }) : h("div", { class: "muted" }, "image not in the version"),
          heat),
        h("div", { class: "caption" }, `${image.kind}: ${image.label} ${fixed(image.score, 2)}`));
    })));
}

// evaluation.json's per-format figures: every exported file, run in its own runtime on the test split.
function formatsSection(formats) {
  if (!formats || !formats.length) return h("p", { class: "muted" }, "This run has no per-format figures.");
  const rows = formats.map((f) => [
    f.format, f.file, `${fixed(f.bytes / 1e6, 1)} MB`,
    f.latencyMs ? `${fixed(f.latencyMs.median, 2)} / ${fixed(f.latencyMs.p90, 2)} ms` : "–",
    f.predictionsChecked ? fixed(f.top1, 4) : "not checked",
    f.predictionsChecked ? fixed(f.top1Agreement, 4) : "–",
  ]);
  return h("div", { id: "formats" }, table(["format", "file", "size", "latency median / p90", "top-1", "top-1 agreement with PyTorch"], rows, [2, 3, 4, 5]));
}

function testTile(view, k, top1) {
  const sha = view.images[k];
  const truth = view.truth[k].map((j) => view.labels[j]).join(", ");
  const predicted = `${view.labels[top1[k]]} ${fixed(view.scores[k][top1[k]], 2)}`;
  return h("div", { class: "tile", title: `true ${truth}, predicted ${predicted}` },
    sha ? h("img", { src: imageUrl(view.dataset, view.version, sha), alt: truth, loading: "lazy" }) : h("div", { class: "muted" }, "image not in the version"),
    h("div", { class: "caption" }, `true ${truth}`),
    h("div", { class: "caption muted" }, `predicted ${predicted}`));
}

// --- deploy & test ---------------------------------------------------------------

async function deployPage() {
  const deployments = await api("/api/deployments");
  const result = h("div", { id: "prediction", role: "status" });
  const snippets = h("div", { id: "snippets" });
  const select = h("select", { id: "deployment" }, deployments.map((d, i) => h("option", { value: i }, `${d.ref.namespace}/${d.ref.name}`)));
  const input = h("input", { type: "file", id: "test-image", accept: "image/*" });
  const drop = h("div", { class: "drop", id: "drop" }, "Drop an image here, or choose one: ", input);
  const chosen = () => deployments[Number(select.value)];
  const renderSnippets = () => {
    const d = chosen();
    if (!d) return;
    const curl = `base64 -w0 image.jpg | jq -Rs '{payload: {image: {imageBytes: .}}}' \\\n  | curl -s -X POST -H 'Content-Type: application/json' --data @- \\\n  ${d.predictUrl}`;
    const python = `import base64, json, urllib.request\n\nwith open("image.jpg", "rb") as f:\n    body = {"payload": {"image": {"imageBytes": base64.b64encode(f.read()).decode()}}}\nrequest = urllib.request.Request(\n    "${d.predictUrl}",\n    data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})\nprint(json.load(urllib.request.urlopen(request))["payload"])`;
    const copy = (text) => h("button", { class: "plain", onclick: () => navigator.clipboard.writeText(text) }, "copy");
    snippets.replaceChildren(h("h2", {}, "The same request with curl"), h("pre", { id: "curl" }, curl), copy(curl), h("h2", {}, "…and Python"), h("pre", { id: "python" }, python), copy(python));
  };
  const send = async (file) => {
    const d = chosen();
    if (!d || !file) return;
    if (file.size > options.maxImageBytes) {
      result.replaceChildren(failure(new Error(`the image is over the limit of ${options.maxImageBytes} bytes`)));
      return;
    }
    const data = new FormData();
    data.set("image", file);
    data.set("topK", "5");
    result.replaceChildren(h("span", { class: "muted" }, "Asking…"));
    try {
      const labels = await api(`/api/deployments/${enc(d.ref.namespace)}/${enc(d.ref.name)}/predict`, { method: "POST", body: data });
      const preview = h("img", { alt: file.name, class: "preview" });
      preview.src = URL.createObjectURL(file);
      preview.style.maxWidth = "160px";
      result.replaceChildren(preview, table(["label", "score"], labels.map((l) => [h("span", { class: "label" }, l.label), fixed(l.score, 4)]), [1]));
    } catch (error) {
      result.replaceChildren(failure(error));
    }
  };
  input.addEventListener("change", () => send(input.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send(e.dataTransfer.files[0]); });
  select.addEventListener("change", renderSnippets);
  const rows = deployments.map((d) => [d.ref.name, d.ref.namespace, d.model, `${d.readyNodes}/${d.nodes}`, d.ready ? h("span", { class: "ok" }, "ready") : h("span", { class: "error" }, "not ready"), d.modelVersion || "–"]);
  show(
    h("h1", {}, "Deploy & test"),
    deployments.length ? table(["deployment", "namespace", "model", "nodes ready", "state", "model version"], rows) : h("p", { class: "muted" }, options.local ? "No deployment: start `autovision serve RUN` and pass its gateway with `autovision console --deployment NAME=URL`." : "No ModelDeployment yet."),
    deployments.length ? h("div", {}, h("h2", {}, "Test & use"), h("div", { class: "toolbar" }, "Deployment ", select), drop, result, snippets) : null,
  );
  renderSnippets();
}

// --- routing -----------------------------------------------------------------------

const routes = [
  [/^#\/datasets\/([^/]+)\/([^/]+)\/([^/]+)$/, versionPage, "datasets"],
  [/^#\/datasets$/, datasetsPage, "datasets"],
  [/^#\/import$/, importPage, "import"],
  [/^#\/runs\/([^/]+)\/([^/]+)\/([^/]+)$/, runPage, "runs"],
  [/^#\/runs$/, runsPage, "runs"],
  [/^#\/evaluate\/([^/]+)\/([^/]+)\/([^/]+)$/, evaluatePage, "runs"],
  [/^#\/deploy$/, deployPage, "deploy"],
];

async function route() {
  timers.forEach(clearTimeout);
  timers = [];
  generation += 1;
  const hash = location.hash || "#/datasets";
  const [pattern, page, tab] = routes.find(([p]) => p.test(hash)) || routes[1];
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === tab));
  const match = hash.match(pattern);
  try {
    options = options || (await api("/api/options"));
    await page(...(match ? match.slice(1).map(decodeURIComponent) : []));
  } catch (error) {
    if (error instanceof Stale) return;
    show(failure(error), error instanceof Unauthorized ? h("p", {}, h("a", { href: "/login", id: "login" }, "Log in")) : null);
  }
}

window.addEventListener("hashchange", route);
route();
