// Draws the report's charts with uPlot from the timeline embedded in the page.
(function () {
  "use strict";
  var body = document.body;
  var data = JSON.parse(document.getElementById("timeline").textContent);
  var cols = data.columns, rows = data.rows;
  function col(name) {
    var i = cols.indexOf(name);
    return rows.map(function (r) { return r[i]; });
  }
  var t = col("t_s");
  var span = t.length ? t[t.length - 1] : 0;
  function clock(s) {
    if (span < 120) { return (Math.round(s * 10) / 10) + " s"; }
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.round(s % 60);
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }
  var palette = ["#1f77b4", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#2ca02c"];
  var kinds = cols.filter(function (c) { return c.indexOf("refused_") === 0; })
    .filter(function (c) { return col(c).some(function (v) { return v > 0; }); });
  var charts = [
    ["chart-answers", "answers/s", [["answers per second", col("answers_per_s")]]],
    ["chart-flight", "requests", [["in flight (most)", col("in_flight")],
                                  ["learned cap", col("cap"), [6, 4]]]],
    ["chart-refusals", "per interval",
      kinds.map(function (c) { return ["429 " + c.slice(8).replace("_", " "), col(c)]; })
        .concat([["retries", col("retries"), [2, 3]]])],
    ["chart-latency", "seconds", [["p50", col("latency_p50_s")], ["p95", col("latency_p95_s")]]],
    ["chart-cost", "RUB", [["cost so far", col("cost_rub")]]]
  ];
  var drawn = 0;
  charts.forEach(function (chart) {
    var holder = document.getElementById(chart[0]);
    var width = Math.max(320, holder.clientWidth || 480);
    var series = [{ label: "time", value: function (u, v) { return v == null ? "-" : clock(v); } }];
    chart[2].forEach(function (s, i) {
      series.push({ label: s[0], stroke: palette[i % palette.length], width: 1.5,
                    dash: s[2], spanGaps: false, points: { show: rows.length < 40 } });
    });
    var options = {
      width: width, height: 220, series: series,
      scales: { x: { time: false } },
      axes: [{ values: function (u, vals) { return vals.map(clock); } }, { label: chart[1] }],
      legend: { live: true }
    };
    new uPlot(options, [t].concat(chart[2].map(function (s) { return s[1]; })), holder);
    if (!rows.length) {
      var note = document.createElement("p");
      note.className = "empty";
      note.textContent = "no interval was sampled: the run was too short";
      holder.appendChild(note);
    }
    drawn += holder.querySelector("canvas") ? 1 : 0;
  });
  body.setAttribute("data-charts", String(drawn));
})();
