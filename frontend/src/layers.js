// Layer descriptions for the overlay legend built from the page's injected data.

const GT_COLOUR = "#00ff00";
const OAR_COLOURS = ["#ff8800", "#ff00ff", "#00ffff", "#8888ff", "#ffff88", "#ff8888"];

export function modelLayer(key, name, payload, color) {
  return { key, name, kind: "mask", payload, color, opacity: 0.35 };
}

export function layersFromConfig(config) {
  const layers = [];
  (config.structures || []).forEach((s, i) => {
    layers.push({
      key: `roi-${s.id}`,
      name: s.name,
      kind: "mask",
      payload: s.payload,
      color: s.ground_truth ? GT_COLOUR : OAR_COLOURS[i % OAR_COLOURS.length],
      opacity: s.ground_truth ? 0.4 : 0.25,
      visible: s.ground_truth || (config.structures.length <= 4),
    });
  });
  (config.results || []).forEach((r) => {
    layers.push(modelLayer(`job-${r.job}`, r.name, r.payload, r.color || (r.model === "vision" ? "#ff3030" : "#ffd400")));
    if (r.probability) {
      layers.push({ key: `prob-${r.job}`, name: `${r.name} probability`, kind: "probability", payload: r.probability,
        opacity: 0.35, visible: false });
    }
  });
  return layers;
}
