// The impact page's charts, drawn with Chart.js from the figures the page
// carries in #impact-data's data-chart (the same as its tables).
document.addEventListener("DOMContentLoaded", () => {
  const source = document.getElementById("impact-data");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  const data = JSON.parse(source.dataset.chart);
  const words = data.words;
  const money = { type: "linear", position: "right", grid: { drawOnChartArea: false } };
  new Chart(document.getElementById("impact-by-group"), {
    type: "bar",
    data: {
      labels: data.groups,
      datasets: [
        { label: words.sold_kg, data: data.kg, yAxisID: "kg" },
        { label: words.sales, data: data.sales, yAxisID: "money" },
      ],
    },
    options: { animation: false, scales: { kg: { type: "linear", position: "left" }, money } },
  });
  new Chart(document.getElementById("impact-by-week"), {
    type: "line",
    data: {
      labels: data.weeks,
      datasets: [
        { label: words.sold_kg, data: data.weekly_kg, yAxisID: "kg" },
        { label: words.sales, data: data.weekly_sales, yAxisID: "money" },
      ],
    },
    options: { animation: false, scales: { kg: { type: "linear", position: "left" }, money } },
  });
  document.body.dataset.chartsDrawn = "true";
});
