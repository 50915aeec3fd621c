//! The HTML report: one self-contained file (no network) with an interactive chart of memory
//! over time by domain, the size classes live at exit, the table of domains, and with debug
//! mode the blocks live at exit by allocation site with their stacks. The chart is
//! drawn by the script below from the stats document embedded in the page; when it has drawn
//! everything it marks `<body data-rendered="yes">`, which the tests look for.

use crate::document::StatsDocument;
use crate::flame::{self, Measure};
use crate::profile::Profile;

/// The page for `json` (the stats document's text), titled after `title` (the command run),
/// with the profile's flame graphs and sites if there is a profile.
pub fn render(
    json: &str,
    document: &StatsDocument,
    title: &str,
    profile: Option<&Profile>,
) -> String {
    // `</` inside a script element would end it early.
    let embedded = json.replace("</", "<\\/");
    let mismatches = document.total_mismatches();
    let misuse = if mismatches == 0 {
        "No block was freed through another family.".to_owned()
    } else {
        format!("{mismatches} blocks were freed or reallocated through another domain's family.")
    };
    PAGE.replace("{{TITLE}}", &escape(title))
        .replace("{{MISUSE}}", &escape(&misuse))
        .replace(
            "{{PROFILE}}",
            &profile.map(profile_section).unwrap_or_default(),
        )
        .replace("{{STATS}}", &embedded)
}

/// Sites the profile's table lists.
const TABLE_SITES: usize = 20;

/// The profile: two flame graphs (bytes allocated, bytes live at the peak), each an `inferno`
/// SVG in a frame of its own (each carries a script with fixed element ids, so two cannot share
/// one document), and the top sites.
fn profile_section(profile: &Profile) -> String {
    let mut html = format!(
        "<h2>Where the memory went</h2>\n<p>A sampled profile: {} samples, one per {} bytes \
         allocated on average; the figures are estimates.</p>\n",
        profile.samples, profile.sample_bytes
    );
    for (measure, heading, id) in [
        (
            Measure::AllocatedBytes,
            "Bytes allocated",
            "flame-allocated",
        ),
        (Measure::PeakBytes, "Bytes live at the peak", "flame-peak"),
    ] {
        html.push_str(&format!("<h3>{heading}</h3>\n"));
        match flame::svg(profile, measure, heading) {
            Some(svg) => html.push_str(&format!(
                "<iframe id=\"{id}\" class=\"flame\" srcdoc=\"{}\"></iframe>\n",
                escape(&svg)
            )),
            None => html.push_str("<p>No samples.</p>\n"),
        }
    }
    html.push_str(
        "<table id=\"sites\"><thead><tr><th>site</th><th>allocated</th><th>allocations</th>\
         <th>live at the peak</th></tr></thead><tbody>\n",
    );
    for site in profile.sites.iter().take(TABLE_SITES) {
        let frames: Vec<String> = site
            .frames
            .iter()
            .take(6)
            .map(|f| escape(&f.describe()))
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            frames.join("<br>&larr; "),
            site.allocated_bytes,
            site.allocations,
            site.peak_bytes
        ));
    }
    html.push_str("</tbody></table>\n");
    html
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tallymalloc: {{TITLE}}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
  h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
  code { font-size: 0.95em; }
  table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  #leaks th:last-child, #leaks td:last-child { text-align: left; white-space: pre; }
  tr:nth-child(even) td { background: #f4f4f4; }
  svg text { font: 11px system-ui, sans-serif; fill: #444; }
  iframe.flame { width: 100%; height: 420px; border: 1px solid #ddd; }
  #sites td:first-child { font-family: monospace; font-size: 12px; }
  #legend span { cursor: pointer; margin-right: 1.2em; user-select: none; }
  #legend span.off { opacity: 0.35; }
  #tip { position: absolute; pointer-events: none; background: #fff; border: 1px solid #999;
         padding: 4px 8px; font-size: 12px; display: none; white-space: pre; }
</style>
</head>
<body>
<h1>Memory of <code>{{TITLE}}</code></h1>
<p id="summary"></p>
<h2>Memory over time</h2>
<div id="legend"></div>
<svg id="chart" width="960" height="320" role="img" aria-label="memory over time"></svg>
<div id="tip"></div>
<h2>Domains</h2>
<table id="domains"><thead><tr><th>domain</th><th>peak</th><th>at</th><th>live at exit</th>
<th>allocations</th><th>frees</th><th>bytes allocated</th><th>mismatches</th></tr></thead>
<tbody></tbody></table>
<h2>Live at exit by block size</h2>
<svg id="histogram" width="960" height="40" role="img" aria-label="size classes"></svg>
<h2>Misuse</h2>
<p>{{MISUSE}}</p>
<h2>Leaks by allocation site</h2>
<p id="leak-summary">Leaks grouped by allocation site need tallymalloc's debug mode
(<code>tallymalloc run --debug</code>).</p>
<table id="leaks"><thead><tr><th>site</th><th>blocks</th><th>bytes</th><th>allocated at</th></tr>
</thead><tbody></tbody></table>
{{PROFILE}}
<script type="application/json" id="stats">{{STATS}}</script>
<script>
"use strict";
const stats = JSON.parse(document.getElementById("stats").textContent);
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#444", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"];

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
}
function seconds(ms) { return (ms / 1000).toFixed(3) + " s"; }
function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}
function domainNames() {
  const builtin = ["raw", "mem", "obj"].filter(n => n in stats.domains);
  const named = Object.keys(stats.domains).filter(n => !builtin.includes(n)).sort();
  return builtin.concat(named);
}

function summary() {
  const p = stats.process;
  let peakResident = p.resident_bytes;
  for (const s of stats.timeline || []) peakResident = Math.max(peakResident, s.resident_bytes);
  document.getElementById("summary").textContent =
    "Ran " + seconds(p.uptime_ms) + " on " + p.threads_seen + (p.threads_seen === 1 ? " thread" : " threads") + "; resident memory peaked at " +
    bytes(peakResident) + " and was " + bytes(p.resident_bytes) + " at exit.";
}

function leakTable() {
  const leaks = stats.leaks;
  if (!leaks) return;
  const sites = leaks.sites;
  const blocks = sites.reduce((sum, site) => sum + site.blocks, 0);
  const total = sites.reduce((sum, site) => sum + site.bytes, 0);
  document.getElementById("leak-summary").textContent = sites.length === 0
    ? "No block was live at exit (debug mode found " + leaks.errors + " errors)."
    : blocks.toLocaleString("en") + " blocks (" + bytes(total) + ") were live at exit, from " +
      sites.length + (sites.length === 1 ? " site" : " sites") + "; debug mode found " +
      leaks.errors + " errors.";
  const body = document.querySelector("#leaks tbody");
  sites.forEach((site, index) => {
    const row = document.createElement("tr");
    const frames = site.stack.map(f => f.function + (f.location ? "  " + f.location : "")).join("\n");
    for (const cell of [String(index + 1), site.blocks.toLocaleString("en"), bytes(site.bytes), frames]) {
      const td = document.createElement("td");
      td.textContent = cell;
      row.appendChild(td);
    }
    body.appendChild(row);
  });
}

function domainTable() {
  const body = document.querySelector("#domains tbody");
  for (const name of domainNames()) {
    const d = stats.domains[name];
    if (d.allocations === 0 && d.mismatches === 0 && name !== "raw") continue;
    const row = document.createElement("tr");
    for (const cell of [name, bytes(d.peak_bytes), seconds(d.peak_time_ms), bytes(d.live_usable_bytes),
                        d.allocations.toLocaleString("en"), d.frees.toLocaleString("en"),
                        bytes(d.allocated_bytes), d.mismatches.toLocaleString("en")]) {
      const td = document.createElement("td");
      td.textContent = cell;
      row.appendChild(td);
    }
    body.appendChild(row);
  }
}

function chart() {
  const svg = document.getElementById("chart");
  const samples = stats.timeline || [];
  const width = 960, height = 320, left = 70, right = 30, top = 10, bottom = 30;
  const series = [{ name: "resident", value: s => s.resident_bytes }];
  for (const name of domainNames()) {
    if (samples.some(s => (s.live_bytes[name] || 0) > 0))
      series.push({ name: "live " + name, value: s => s.live_bytes[name] || 0 });
  }
  series.forEach((s, i) => { s.color = COLORS[i % COLORS.length]; s.shown = true; });
  if (samples.length < 2) {
    element("text", { x: left, y: 40 }, svg).textContent =
      "Too short a run for a timeline: run longer, or sample more often with --interval.";
    return;
  }
  const endTime = samples[samples.length - 1].time_ms || 1;
  const x = t => left + (width - left - right) * t / endTime;
  let yTop = 1, y = () => 0;
  const axes = element("g", {}, svg), lines = element("g", {}, svg);
  const cursor = element("line", { y1: top, y2: height - bottom, stroke: "#999", visibility: "hidden" }, svg);

  function draw() {
    axes.replaceChildren(); lines.replaceChildren();
    yTop = 1;
    for (const s of series) if (s.shown) for (const sample of samples) yTop = Math.max(yTop, s.value(sample));
    y = v => height - bottom - (height - top - bottom) * v / yTop;
    for (let i = 0; i <= 4; i++) {
      const v = yTop * i / 4;
      element("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), stroke: "#eee" }, axes);
      element("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, axes).textContent = bytes(Math.round(v));
    }
    for (let i = 0; i <= 5; i++) {
      const t = endTime * i / 5;
      element("text", { x: x(t), y: height - 10, "text-anchor": "middle" }, axes).textContent = seconds(Math.round(t));
    }
    for (const s of series) {
      if (!s.shown) continue;
      const points = samples.map(sample => x(sample.time_ms).toFixed(1) + "," + y(s.value(sample)).toFixed(1));
      element("polyline", { points: points.join(" "), fill: "none", stroke: s.color, "stroke-width": 1.5,
                            "data-series": s.name }, lines);
    }
  }

  const legend = document.getElementById("legend");
  for (const s of series) {
    const item = document.createElement("span");
    item.textContent = "■ " + s.name;
    item.style.color = s.color;
    item.title = "show or hide";
    item.addEventListener("click", () => { s.shown = !s.shown; item.classList.toggle("off", !s.shown); draw(); });
    legend.appendChild(item);
  }
  const tip = document.getElementById("tip");
  svg.addEventListener("mousemove", event => {
    const box = svg.getBoundingClientRect();
    const t = (event.clientX - box.left - left) / (width - left - right) * endTime;
    let nearest = samples[0];
    for (const sample of samples) if (Math.abs(sample.time_ms - t) < Math.abs(nearest.time_ms - t)) nearest = sample;
    cursor.setAttribute("x1", x(nearest.time_ms)); cursor.setAttribute("x2", x(nearest.time_ms));
    cursor.setAttribute("visibility", "visible");
    tip.textContent = seconds(nearest.time_ms) + "\n" +
      series.filter(s => s.shown).map(s => s.name + ": " + bytes(s.value(nearest))).join("\n");
    tip.style.left = (event.pageX + 12) + "px"; tip.style.top = (event.pageY + 12) + "px";
    tip.style.display = "block";
  });
  svg.addEventListener("mouseleave", () => { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
  draw();
}

function histogram() {
  const svg = document.getElementById("histogram");
  const rows = stats.size_classes.filter(c => c.live_blocks > 0)
    .map(c => ({ label: bytes(c.size), blocks: c.live_blocks, bytes: c.live_bytes }));
  if (stats.huge.live_blocks > 0)
    rows.push({ label: "huge", blocks: stats.huge.live_blocks, bytes: stats.huge.live_bytes });
  if (rows.length === 0) {
    element("text", { x: 0, y: 20 }, svg).textContent = "No block was live at exit.";
    return;
  }
  const rowHeight = 18, labelWidth = 80, barWidth = 640;
  svg.setAttribute("height", rows.length * rowHeight + 4);
  const most = Math.max(...rows.map(r => r.bytes), 1);
  rows.forEach((r, i) => {
    const yy = i * rowHeight;
    element("text", { x: labelWidth - 6, y: yy + 13, "text-anchor": "end" }, svg).textContent = r.label;
    const rect = element("rect", { x: labelWidth, y: yy + 3, height: rowHeight - 6,
                                   width: Math.max(1, barWidth * r.bytes / most), fill: "#1f77b4" }, svg);
    const label = r.blocks.toLocaleString("en") + (r.blocks === 1 ? " block, " : " blocks, ") + bytes(r.bytes);
    element("title", {}, rect).textContent = label;
    element("text", { x: labelWidth + barWidth + 8, y: yy + 13 }, svg).textContent = label;
  });
}

summary();
domainTable();
leakTable();
chart();
histogram();
document.body.dataset.rendered = "yes";
</script>
</body>
</html>
"##;
