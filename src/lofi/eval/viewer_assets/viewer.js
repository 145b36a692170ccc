// lofi viewer: inlined into index.html by lofi.eval.viewer. Vanilla JS; data only ever goes in via textContent.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("lofi-viewer-data").textContent);
  // A detection is [start_sec, end_sec, class_idx, score]; a ground-truth segment [start_sec, end_sec, class_idx].
  const START = 0, END = 1, CLASS = 2, SCORE = 3;
  const LEGEND_OPEN_MAX = 30;  // more classes than this: the legend starts folded
  const MAX_ROWS = 4, ROW_PX = 9, LANE_PX = 16;  // sub-rows of overlapping detections in one class lane
  const views = [];
  let minScore = data.min_score;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function seconds(sec) { return sec.toFixed(2) + " s"; }

  function tickStep(durationSec) {
    const steps = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    for (const step of steps) if (durationSec / step <= 7) return step;
    return Math.ceil(durationSec / 7 / 3600) * 3600;
  }

  function tickText(sec, durationSec) {
    if (durationSec < 60) return Number(sec.toFixed(2)) + " s";
    const s = Math.round(sec), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mmss = String(m).padStart(h ? 2 : 1, "0") + ":" + String(r).padStart(2, "0");
    return h ? h + ":" + mmss : mmss;
  }

  function fraction(sec, durationSec) { return Math.min(Math.max(sec / durationSec, 0), 1); }

  function place(node, startSec, endSec, durationSec) {
    const left = fraction(startSec, durationSec), right = fraction(endSec, durationSec);
    node.style.left = (100 * left) + "%";
    node.style.width = (100 * Math.max(right - left, 0)) + "%";
  }

  function describe(det) {
    return data.classes[det[CLASS]] + ": " + seconds(det[START]) + " \u2013 " + seconds(det[END]) +
      ", score " + det[SCORE].toFixed(3);
  }

  // ---- Controls: the score slider, the shown/total count and the legend.
  function buildControls() {
    const header = document.getElementById("controls");
    const slider = el("label", "slider");
    slider.append(el("span", "", "min score"));
    const input = el("input");
    Object.assign(input, {type: "range", min: "0", max: "1", step: "0.01", id: "min-score"});
    input.value = String(minScore);
    const output = el("output", "", minScore.toFixed(2));
    slider.append(input, output);
    const count = el("span", "count");
    count.id = "shown-count";
    input.addEventListener("input", function () {
      minScore = Number(input.value);
      output.textContent = minScore.toFixed(2);
      applyFilter();
    });
    header.append(slider, count, buildLegend());
  }

  function buildLegend() {
    const used = new Set();
    for (const v of data.videos) {
      for (const d of v.detections) used.add(d[CLASS]);
      for (const s of v.ground_truth || []) used.add(s[CLASS]);
    }
    const legend = el("details", "legend");
    legend.open = used.size <= LEGEND_OPEN_MAX;
    legend.append(el("summary", "", used.size + " classes"));
    const items = el("div", "legend-items");
    for (const idx of Array.from(used).sort(function (a, b) { return a - b; })) {
      const item = el("span", "legend-item");
      const swatch = el("span", "swatch");
      swatch.style.background = data.colors[idx];
      item.append(swatch, el("span", "", data.classes[idx]));
      items.append(item);
    }
    legend.append(items);
    return legend;
  }

  // ---- One video: header, player, timeline (ground truth, one lane per class, axis), detection list.
  function buildVideo(v, index) {
    const view = {data: v, bars: [], rows: null, selected: null};
    const section = el("section", "video");
    section.dataset.index = String(index);
    const title = el("h2", "", v.video_id);
    view.count = el("span", "count");
    title.append(view.count);

    const row = el("div", "row");
    const player = el("div", "player");
    const video = el("video");
    video.controls = true;
    video.preload = "metadata";
    video.src = v.src;
    video.tabIndex = 0;
    view.video = video;
    view.detail = el("div", "detail", "click a detection to seek to its start");
    view.detail.setAttribute("aria-live", "polite");
    player.append(video, view.detail);

    const timeline = buildTimeline(view);
    row.append(player, timeline);
    section.append(title, row, buildList(view));
    followPlayhead(view);
    video.addEventListener("keydown", function (event) {
      if (event.key !== " ") return;
      event.preventDefault();
      if (video.paused) video.play(); else video.pause();
    });
    return {section: section, view: view};
  }

  function buildTimeline(view) {
    const v = view.data;
    const timeline = el("div", "timeline");
    if (v.ground_truth !== null) {
      const lane = buildLane(view, "ground truth", "gt-lane");
      for (const s of v.ground_truth) {
        const bar = el("div", "bar gt");
        place(bar, s[START], s[END], v.duration_sec);
        bar.style.background = data.colors[s[CLASS]];
        bar.title = "ground truth " + data.classes[s[CLASS]] + ": " + seconds(s[START]) + " \u2013 " + seconds(s[END]);
        lane.track.append(bar);
      }
      timeline.append(lane.node);
    }
    const byClass = new Map();
    v.detections.forEach(function (det, i) {
      if (!byClass.has(det[CLASS])) byClass.set(det[CLASS], []);
      byClass.get(det[CLASS]).push(i);
    });
    if (!byClass.size) {
      const lane = buildLane(view, "", "");
      lane.track.append(el("span", "empty", "\u00a0no detections"));
      timeline.append(lane.node);
    }
    for (const idx of Array.from(byClass.keys()).sort(function (a, b) { return a - b; })) {
      const lane = buildLane(view, data.classes[idx], "");
      const rows = packRows(v.detections, byClass.get(idx));
      const numRows = Math.max.apply(null, Array.from(rows.values())) + 1;
      lane.node.style.height = (numRows === 1 ? LANE_PX : numRows * ROW_PX + 2) + "px";
      const order = byClass.get(idx).slice().sort(function (a, b) { return v.detections[a][SCORE] - v.detections[b][SCORE]; });
      for (const i of order) {  // the best scores drawn last, on top
        const bar = buildBar(view, i);
        if (numRows > 1) {
          bar.style.top = (1 + rows.get(i) * ROW_PX) + "px";
          bar.style.height = (ROW_PX - 2) + "px";
        }
        lane.track.append(bar);
      }
      timeline.append(lane.node);
    }
    timeline.append(buildAxis(v.duration_sec));
    const overlay = el("div", "overlay");
    const step = tickStep(v.duration_sec);
    for (let t = step; t < v.duration_sec - 1e-9; t += step) {
      const line = el("div", "gridline");
      line.style.left = (100 * fraction(t, v.duration_sec)) + "%";
      overlay.append(line);
    }
    view.playhead = el("div", "playhead");
    overlay.append(view.playhead);
    timeline.append(overlay);
    return timeline;
  }

  // Detections of one class, best score first, each into the first sub-row where it overlaps nothing (so the top
  // row holds the best non-overlapping set); beyond MAX_ROWS, overlaps stay in the last row. Returns index -> row.
  function packRows(dets, indices) {
    const rowSpans = [];
    const rows = new Map();
    const byScore = indices.slice().sort(function (a, b) { return dets[b][SCORE] - dets[a][SCORE]; });
    for (const i of byScore) {
      let row = 0;
      while (row < rowSpans.length && rowSpans[row].some(function (span) {
        return dets[i][START] < span[1] && span[0] < dets[i][END];
      })) row++;
      row = Math.min(row, MAX_ROWS - 1);
      if (row === rowSpans.length) rowSpans.push([]);
      rowSpans[row].push([dets[i][START], dets[i][END]]);
      rows.set(i, row);
    }
    return rows;
  }

  function buildLane(view, label, className) {
    const node = el("div", "lane" + (className ? " " + className : ""));
    const name = el("div", "lane-label", label);
    name.title = label;
    const track = el("div", "track");
    track.addEventListener("click", function (event) {  // the background seeks to the clicked time
      const box = track.getBoundingClientRect();
      view.video.currentTime = view.data.duration_sec * fraction(event.clientX - box.left, box.width);
    });
    node.append(name, track);
    return {node: node, track: track};
  }

  function buildBar(view, i) {
    const det = view.data.detections[i];
    const bar = el("div", "bar det");
    place(bar, det[START], det[END], view.data.duration_sec);
    bar.style.background = data.colors[det[CLASS]];
    bar.style.opacity = String(0.2 + 0.8 * Math.min(Math.max(det[SCORE], 0), 1));
    bar.title = describe(det);
    bar.dataset.index = String(i);
    bar.dataset.startSec = String(det[START]);
    bar.dataset.score = String(det[SCORE]);
    bar.addEventListener("click", function (event) {
      event.stopPropagation();
      select(view, i);
    });
    view.bars.push({node: bar, index: i});
    return bar;
  }

  function buildAxis(durationSec) {
    const axis = el("div", "lane axis");
    const track = el("div", "track");
    const step = tickStep(durationSec);
    for (let k = 0; k * step < durationSec * 0.94; k++) {  // stop short of the end label
      track.append(tick(k * step, durationSec, k === 0 ? "first" : ""));
    }
    track.append(tick(durationSec, durationSec, "last"));
    axis.append(el("div", "lane-label", ""), track);
    return axis;
  }

  function tick(sec, durationSec, className) {
    const node = el("span", "tick" + (className ? " " + className : ""), tickText(sec, durationSec));
    node.style.left = (100 * fraction(sec, durationSec)) + "%";
    return node;
  }

  // ---- The detection list: a table built when first opened (hundreds of rows times many videos stay cheap).
  function buildList(view) {
    const list = el("details", "list");
    list.append(el("summary", "", "detections (" + view.data.detections.length + ")"));
    list.addEventListener("toggle", function () {
      if (!list.open || view.rows) return;
      list.append(buildTable(view));
      applyFilter();
    });
    return list;
  }

  function buildTable(view) {
    const table = el("table", "detections");
    const head = el("tr");
    for (const name of ["#", "label", "start (s)", "end (s)", "score"]) {
      head.append(el("th", name === "label" ? "label" : "", name));
    }
    const thead = el("thead");
    thead.append(head);
    table.append(thead);
    const body = el("tbody");
    const order = view.data.detections.map(function (_, i) { return i; });
    order.sort(function (a, b) { return view.data.detections[a][START] - view.data.detections[b][START]; });
    view.rows = [];
    for (const i of order) {
      const det = view.data.detections[i];
      const row = el("tr");
      row.tabIndex = 0;
      row.dataset.index = String(i);
      const label = el("td", "label");
      const swatch = el("span", "swatch");
      swatch.style.background = data.colors[det[CLASS]];
      label.append(swatch, document.createTextNode(" " + data.classes[det[CLASS]]));
      row.append(el("td", "", String(i + 1)), label, el("td", "", det[START].toFixed(2)),
        el("td", "", det[END].toFixed(2)), el("td", "", det[SCORE].toFixed(3)));
      row.addEventListener("click", function () { select(view, i); });
      row.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(view, i); }
      });
      body.append(row);
      view.rows.push({node: row, index: i});
    }
    table.append(body);
    return table;
  }

  // ---- Behaviour: selecting seeks, the playhead follows the video, the slider filters every video.
  function select(view, i) {
    const det = view.data.detections[i];
    view.video.currentTime = det[START];
    view.selected = i;
    for (const bar of view.bars) bar.node.classList.toggle("selected", bar.index === i);
    for (const row of view.rows || []) row.node.classList.toggle("selected", row.index === i);
    view.detail.textContent = describe(det);
  }

  function followPlayhead(view) {
    const video = view.video;
    function draw() {
      view.playhead.style.left = (100 * fraction(video.currentTime || 0, view.data.duration_sec)) + "%";
    }
    function loop() {
      draw();
      if (!video.paused && !video.ended) requestAnimationFrame(loop);
    }
    for (const name of ["timeupdate", "seeking", "seeked", "loadedmetadata"]) video.addEventListener(name, draw);
    video.addEventListener("play", function () { requestAnimationFrame(loop); });
    draw();
  }

  function applyFilter() {
    let shown = 0;
    for (const view of views) {
      const dets = view.data.detections;
      let shownHere = 0;
      for (const bar of view.bars) {
        const hide = dets[bar.index][SCORE] < minScore;
        bar.node.hidden = hide;
        if (!hide) shownHere++;
      }
      for (const row of view.rows || []) row.node.hidden = dets[row.index][SCORE] < minScore;
      view.count.textContent = shownHere + " of " + dets.length + " detections shown";
      shown += shownHere;
    }
    const total = views.reduce(function (n, view) { return n + view.data.detections.length; }, 0);
    document.getElementById("shown-count").textContent =
      shown + " of " + total + " detections shown in " + views.length + " videos";
  }

  buildControls();
  const main = document.getElementById("videos");
  data.videos.forEach(function (v, index) {
    const built = buildVideo(v, index);
    views.push(built.view);
    main.append(built.section);
  });
  applyFilter();
})();
