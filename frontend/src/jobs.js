// Submitting inference / what-if jobs over REST and following them on the jobs websocket
// (state, progress and, when finished, the compact contour payload).
import { api } from "./api.js";

export function jobId(body) {
  return body ? body.job ?? body.id : null;
}

export async function submitJob(config, { kind, caseId, checkpoint, contextVersion, params }) {
  const body = { kind, case: caseId };
  if (checkpoint) body.checkpoint = checkpoint;
  if (contextVersion) body.context_version = contextVersion;
  if (params) body.params = params;
  return api(config.api.jobs, { method: "POST", body });
}

export async function fetchJob(config, id) {
  return api(config.api.job.replace("{id}", String(id)));
}

// Follow a job until it is final. The websocket first sends the current state (late clients
// miss nothing); if it cannot open, poll the REST resource instead.
export function followJob(config, id, onEvent) {
  return new Promise((resolve) => {
    let done = false;
    let lastSeq = -1;
    const finish = (data) => {
      if (done) return;
      done = true;
      resolve(data);
    };
    const handle = (data) => {
      if (!data || done) return;
      if (typeof data.seq === "number" && data.seq < lastSeq) return;
      if (typeof data.seq === "number") lastSeq = data.seq;
      onEvent(data);
      if (["succeeded", "failed", "cancelled"].includes(data.state) && (data.state !== "succeeded" || data.contour)) {
        finish(data);
      }
    };
    const poll = async () => {
      while (!done) {
        try {
          handle(await fetchJob(config, id));
        } catch (error) {
          onEvent({ state: "error", message: error.message });
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const path = config.api.job_ws.replace("{id}", String(id));
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${window.location.host}${path}`);
    } catch {
      poll();
      return;
    }
    let opened = false;
    socket.onopen = () => { opened = true; };
    socket.onmessage = (message) => {
      const body = JSON.parse(message.data);
      const data = body.data ? { ...body.data, event: body.event || body.type } : body;
      handle(data);
      if (done) socket.close();
    };
    socket.onclose = () => { if (!done) poll(); };
    socket.onerror = () => { if (!opened && !done) socket.close(); };
  });
}

export function progressBar(container) {
  container.innerHTML = '<progress max="100" value="0"></progress> <span class="job-message"></span>';
  const bar = container.querySelector("progress");
  const message = container.querySelector(".job-message");
  return (data) => {
    if (typeof data.progress === "number") bar.value = data.progress;
    message.textContent = `${data.state || ""} ${data.message || ""} ${data.error || ""}`.trim();
    container.dataset.state = data.state || "";
  };
}
