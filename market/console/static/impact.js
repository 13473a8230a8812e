// The impact page's charts, drawn with Chart.js from the figures the page
// carries in #impact-data's data-chart (the same as its tables).
document.addEventListener("DOMContentLoaded", () => {
  const source = document.getElementById("impact-data");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  const data = JSON.parse(source.dataset.chart);
  // Kilograms on the left axis, money on the right.
  const draw = (canvas, type, labels, kg, sales) =>
    new Chart(document.getElementById(canvas), {
      type,
      data: {
        labels,
        datasets: [
          { label: data.words.sold_kg, data: kg, yAxisID: "kg" },
          { label: data.words.sales, data: sales, yAxisID: "money" },
        ],
      },
      options: {
        animation: false,
        scales: {
          kg: { type: "linear", position: "left" },
          money: { type: "linear", position: "right", grid: { drawOnChartArea: false } },
        },
      },
    });
  draw("impact-by-group", "bar", data.groups, data.kg, data.sales);
  draw("impact-by-week", "line", data.weeks, data.weekly_kg, data.weekly_sales);
  document.body.dataset.chartsDrawn = "true";
});
