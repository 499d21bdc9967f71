// gankit serve: the page's behaviour. Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let gridUrl = null;      // object URL of the grid on show (what "download PNG" saves)
let walkFrames = [];
let walkTimer = null;
let gridRequest = 0;     // only the newest grid request may update the page

function status(text) { $("status").textContent = text || ""; }

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

function gridQuery() {
  const q = new URLSearchParams();
  q.set("seed", $("seed").value || "0");
  q.set("n", $("n").value);
  if (info.num_classes && $("cls").value !== "") q.set("cls", $("cls").value);
  if (info.truncation && $("trunc-on").checked) q.set("trunc", $("trunc").value);
  if (info.codes) {
    if (info.codes.categorical.length && $("cat0").value !== "") q.set("cat0", $("cat0").value);
    for (let i = 0; i < info.codes.continuous; i++) {
      const el = $("cont" + i);
      if (el.dataset.touched) q.set("cont" + i, el.value);
    }
  }
  return q.toString();
}

async function updateGrid() {
  const mine = ++gridRequest;
  try {
    const r = await fetchOk("/api/grid.png?" + gridQuery());
    const blob = await r.blob();
    if (mine !== gridRequest) return;
    if (gridUrl) URL.revokeObjectURL(gridUrl);
    gridUrl = URL.createObjectURL(blob);
    $("grid").src = gridUrl;
    $("download").href = gridUrl;
    $("download").download = "gankit-" + info.model + "-seed" + $("seed").value + ".png";
    status("");
  } catch (e) {
    if (mine === gridRequest) status(e.message);
  }
}

function showFrame(i) {
  if (!walkFrames.length) return;
  i = Math.max(0, Math.min(walkFrames.length - 1, i));
  $("walk-step").value = i;
  $("walk-pos").textContent = i + " / " + (walkFrames.length - 1);
  $("walk-frame").src = walkFrames[i];
}

async function loadWalk() {
  const q = new URLSearchParams();
  q.set("a", $("walk-a").value || "0");
  q.set("b", $("walk-b").value || "1");
  q.set("steps", $("walk-steps").value || "16");
  if (info.num_classes && $("cls").value !== "") q.set("cls", $("cls").value);
  if (info.truncation && $("trunc-on").checked) q.set("trunc", $("trunc").value);
  const r = await fetchOk("/api/walk?" + q.toString());
  walkFrames = (await r.json()).frames;
  $("walk-step").max = walkFrames.length - 1;
  showFrame(0);
}

function stopWalk() {
  if (walkTimer) clearInterval(walkTimer);
  walkTimer = null;
  $("walk-play").textContent = "play";
}

async function playWalk() {
  if (walkTimer) { stopWalk(); return; }
  try {
    await loadWalk();
    status("");
  } catch (e) { status(e.message); return; }
  let i = 0, dir = 1;
  $("walk-play").textContent = "pause";
  walkTimer = setInterval(() => {
    i += dir;
    if (i >= walkFrames.length - 1 || i <= 0) dir = -dir;  // back and forth
    showFrame(i);
  }, 120);
}

async function updateMixing() {
  const q = new URLSearchParams();
  q.set("rows", $("mix-rows").value);
  q.set("cols", $("mix-cols").value);
  if ($("mix-crossover").value !== "") q.set("crossover", $("mix-crossover").value);
  try {
    const r = await fetchOk("/api/mixing.png?" + q.toString());
    $("mix").src = URL.createObjectURL(await r.blob());
    status("");
  } catch (e) { status(e.message); }
}

function fact(table, key, value) {
  const tr = document.createElement("tr");
  const a = document.createElement("td"), b = document.createElement("td");
  a.textContent = key; b.textContent = value;
  tr.append(a, b); table.append(tr);
}

function buildControls() {
  $("title").textContent = info.model + " on " + (info.dataset || "?") + ", " +
    (info.images_seen / 1000).toLocaleString() + " kimg";
  const facts = $("facts");
  fact(facts, "model", info.model);
  fact(facts, "dataset", info.dataset);
  fact(facts, "images seen", info.images_seen.toLocaleString());
  fact(facts, "steps", info.step.toLocaleString());
  fact(facts, "resolution", info.resolution + " x " + info.resolution + " x " + info.channels);
  fact(facts, "sampled from", info.used_ema ? "G_ema (moving average)" : "G");
  const metrics = $("metrics");
  if (!info.metrics.length) fact(metrics, "no scores yet", "run gankit eval RUN");
  for (const m of info.metrics) fact(metrics, m.metric, Number(m.value).toPrecision(4));
  $("seed").max = info.limits.max_seed;
  if (info.num_classes) {
    $("cls-row").classList.remove("hidden");
    for (let c = 0; c < info.num_classes; c++) {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = c + (info.class_names ? " (" + info.class_names[c] + ")" : "");
      $("cls").append(o);
    }
  }
  if (info.truncation) {
    // the slider spans the model's own range (its registry entry, as the server checks it)
    const high = info.truncation_range[1], t = $("trunc");
    $("trunc-row").classList.remove("hidden");
    t.min = String(high / 20);
    t.max = String(high);
    t.value = String(info.truncation_start);  // the server picks it by what a value means
    $("trunc-value").textContent = t.value;
  }
  if (info.codes) {
    const box = $("codes");
    box.classList.remove("hidden");
    if (info.codes.categorical.length) {
      const lab = document.createElement("label");
      lab.textContent = "category code ";
      const sel = document.createElement("select");
      sel.id = "cat0";
      sel.append(new Option("random", ""));
      for (let k = 0; k < info.codes.categorical[0]; k++) sel.append(new Option(String(k), String(k)));
      sel.addEventListener("change", updateGrid);
      lab.append(sel); box.append(lab);
    }
    for (let i = 0; i < info.codes.continuous; i++) {
      const lab = document.createElement("label");
      lab.textContent = "code " + i + " ";
      const r = document.createElement("input");
      Object.assign(r, { type: "range", min: "-2", max: "2", step: "0.1", value: "0", id: "cont" + i });
      r.addEventListener("input", () => { r.dataset.touched = "1"; updateGrid(); });
      lab.append(r); box.append(lab);
    }
  }
  if (info.style_mixing) {
    $("mixing-section").classList.remove("hidden");
    updateMixing();
  }
}

async function start() {
  try {
    info = await (await fetchOk("/api/info")).json();
  } catch (e) { status("cannot reach the server: " + e.message); return; }
  buildControls();
  $("seed").addEventListener("change", updateGrid);
  $("n").addEventListener("change", updateGrid);
  $("cls").addEventListener("change", updateGrid);
  $("trunc-on").addEventListener("change", updateGrid);
  $("trunc").addEventListener("input", () => {
    $("trunc-value").textContent = $("trunc").value;
    if ($("trunc-on").checked) updateGrid();
  });
  $("new-seeds").addEventListener("click", () => {
    $("seed").value = Math.floor(Math.random() * 1000000);
    updateGrid();
  });
  $("walk-play").addEventListener("click", playWalk);
  $("walk-step").addEventListener("input", () => { stopWalk(); showFrame(Number($("walk-step").value)); });
  $("mix-go").addEventListener("click", updateMixing);
  $("losses").src = "/api/losses.png";
  $("losses").addEventListener("error", () => { $("losses").alt = "no loss curve for this run"; });
  await updateGrid();
  try { await loadWalk(); } catch (e) { status(e.message); }
}

start();
