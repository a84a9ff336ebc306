// Vite entry of the blinded scoring page. It is separate from main.js so the scripts a rater downloads
// hold only the viewer and the rubric form, not the case editor or the model comparison (whose code
// names the models a rater must stay blind to).
import "./style.css";
import { runPage } from "./page.js";
import { startScoring } from "./scoring.js";

runPage((config) => startScoring(document.getElementById("scoring"), config));
